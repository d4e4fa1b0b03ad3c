"""One job's ComfyUI messages as JobEvents, in order, to the job's owner.

- JSON messages keep ComfyUI's type and data; binary frames become `cc.preview` (blob = the image,
  data = the preview metadata) and `cc.progress_text` (blob = the UTF-8 text, data = {node_id}).
- `seq` increases strictly per job. It starts from the clock (microseconds) rather than 1 so that a
  retried attempt, possibly on another instance, continues above the events of the earlier one.
- Partner credentials are scrubbed from everything relayed or recorded: ComfyUI puts a V1 node's
  hidden inputs (the credentials among them) into `execution_error.current_inputs`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from comfy_cloud.broadcast import Broadcaster, JobEvent
from comfy_cloud.broadcast.events import JOB_STATUS, PREVIEW, PROGRESS_TEXT
from comfy_cloud.broadcast.postgres import inline_notification
from database.repositories.broadcast import Notification
from services.inference.comfyui import socket

log = logging.getLogger(__name__)

REDACTED = "[redacted]"


class Redactor:
    def __init__(self, secrets: Sequence[str]) -> None:
        # Short values would match ordinary text; real keys and tokens are long.
        self._secrets = [s for s in secrets if isinstance(s, str) and len(s) >= 8]

    def __call__(self, value: Any) -> Any:
        if not self._secrets:
            return value
        return self._scrub(value)

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            for secret in self._secrets:
                if secret in value:
                    value = value.replace(secret, REDACTED)
            return value
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._scrub(v) for v in value]
        return value


class EventRelay:
    def __init__(
        self, broadcaster: Broadcaster, *, user_id: str, job_id: str, redact: Redactor | None = None
    ) -> None:
        self._broadcaster = broadcaster
        self.user_id = user_id
        self.job_id = job_id
        self.redact = redact or Redactor(())
        self._seq = 0
        self._buffer: list[JobEvent] = []
        self.published = 0
        self.lost = 0

    def _next_seq(self) -> int:
        self._seq = max(self._seq + 1, time.time_ns() // 1000)
        return self._seq

    def add(self, type_: str, data: dict[str, Any], blob: bytes | None = None) -> None:
        """Queue one event; `flush()` publishes what is queued, in order."""
        self._buffer.append(self._event(type_, data, blob))

    def _event(self, type_: str, data: dict[str, Any], blob: bytes | None = None) -> JobEvent:
        return JobEvent(
            user_id=self.user_id,
            job_id=self.job_id,
            type=type_,
            data=self.redact(data),
            blob=blob,
            seq=self._next_seq(),
        )

    def _message_event(self, message: socket.Message) -> JobEvent:
        if message.type == socket.PREVIEW:
            return self._event(PREVIEW, message.data, message.blob)
        if message.type == socket.PROGRESS_TEXT:
            return self._event(PROGRESS_TEXT, message.data, message.blob)
        return self._event(message.type, message.data)

    def add_message(self, message: socket.Message) -> None:
        self._buffer.append(self._message_event(message))

    def add_status(self, status: str) -> None:
        self.add(JOB_STATUS, {"status": status})

    def closing_notification(
        self, messages: Sequence[socket.Message], status: str, database_url: str
    ) -> Notification | None:
        """What is buffered, the closing messages and the final `cc.job_status`, as NOTIFYs for the
        report's own statement to send, delivered with its commit (a round trip fewer at the end of
        every job). None when that cannot be (another broadcaster or database, a payload too large):
        `add_*` and `flush()` them after the commit then. Once the statement committed, `sent_inline()`
        empties the buffer."""
        events = [
            *self._buffer,
            *map(self._message_event, messages),
            self._event(JOB_STATUS, {"status": status}),
        ]
        return inline_notification(self._broadcaster, database_url, events)

    def sent_inline(self, notification: Notification) -> None:
        self._buffer = []
        self.published += len(notification.payloads)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def flush(self) -> None:
        """Publish what is buffered. A broadcast outage loses these events but never the job: the
        database is the truth, and subscribers re-read it after a gap."""
        if not self._buffer:
            return
        events, self._buffer = self._buffer, []
        try:
            await self._broadcaster.publish(events)
        except Exception as exc:
            self.lost += len(events)
            log.warning("%d events of job %s not published: %s", len(events), self.job_id, exc)
            return
        self.published += len(events)
