"""One connected socket: its negotiated features, its outbox, and the task that writes it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

from starlette.websockets import WebSocket

from services.ingest.ws.outbox import Frame, Outbox

log = logging.getLogger(__name__)

STATUS_TIMEOUT = 5.0  # how long a `status` frame may wait for its queue count
STUCK_CLOSE_CODE = 1013  # "try again later": the client reconnects and gets a fresh snapshot
GOING_AWAY_CODE = 1001  # the server shuts down


def status_message(queue_remaining: int, sid: str | None = None) -> str:
    data: dict[str, Any] = {"status": {"exec_info": {"queue_remaining": queue_remaining}}}
    if sid is not None:
        data["sid"] = sid
    return json.dumps({"type": "status", "data": data})


class Client:
    def __init__(
        self, websocket: WebSocket, user_id: uuid.UUID, sid: str, *, max_frames: int, max_bytes: int,
        send_timeout: float,
    ) -> None:  # fmt: skip
        self.websocket = websocket
        self.user_id = user_id
        self.sid = sid
        self.supports_preview_metadata = False
        self.outbox = Outbox(max_frames, max_bytes)
        self.send_timeout = send_timeout
        self.stuck = asyncio.Event()  # set when the socket must be closed (cannot keep up, or shutdown)
        self.close_code = STUCK_CLOSE_CODE
        self.server_flags: dict[str, Any] = {}  # the feature_flags reply, set on connect
        self.received = 0  # client messages read (tests wait on it; ComfyUI only reads the first)
        self._sending_since: float | None = None  # loop time write_forever() started its current send

    def offer(self, frame: Frame, *, front: bool = False) -> None:
        if self.stuck.is_set():
            return
        if not self.outbox.put(frame, front=front):
            log.warning(
                "closing a WebSocket that stopped reading (sid %s, %d frames queued)",
                self.sid,
                len(self.outbox),
            )
            self.stuck.set()

    async def send_now(self, frame: Frame) -> bool:
        """Send one frame; False when the socket cannot take it (disconnected or blocked too long)."""
        ready = await _with_status_text(frame)
        if ready is None:
            return True  # the count failed or was late: skip this one, a later status follows
        try:
            async with asyncio.timeout(self.send_timeout):
                await self._transmit(ready)
        except TimeoutError:
            self._log_blocked()
            return False
        except Exception:
            return False  # disconnected
        return True

    async def write_forever(self) -> None:
        """Send the queued frames until the socket fails. The send deadline is kept by watch_sends(),
        not by an asyncio.timeout around each frame (~5 us of CPU per frame of every socket)."""
        loop = asyncio.get_running_loop()
        while True:
            frame = await _with_status_text(await self.outbox.get())
            if frame is None:
                continue
            self._sending_since = loop.time()
            try:
                await self._transmit(frame)
            except Exception:
                self.stuck.set()  # disconnected
                return
            finally:
                self._sending_since = None

    async def watch_sends(self) -> None:
        """Run beside write_forever(): mark the socket stuck once a send has blocked send_timeout."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.send_timeout / 4)
            started = self._sending_since
            if started is not None and loop.time() - started >= self.send_timeout:
                self._log_blocked()
                self.stuck.set()
                return

    async def _transmit(self, frame: Frame) -> None:
        if frame.data is not None:
            await self.websocket.send_bytes(frame.data)
        elif frame.text is not None:
            await self.websocket.send_text(frame.text)

    def _log_blocked(self) -> None:
        log.warning("closing a WebSocket whose send blocked for %.0f s (sid %s)", self.send_timeout, self.sid)

    async def close(self, code: int = 1000) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.websocket.close(code=code), 1.0)


async def _with_status_text(frame: Frame) -> Frame | None:
    """The frame to send: a `status` frame gets its text once its count is known (None: no count)."""
    if frame.status is None:
        return frame
    text = await _status_text(frame.status)
    return None if text is None else Frame(text=text)


async def _status_text(count: asyncio.Future[int]) -> str | None:
    try:
        if not count.done():  # usually it is (shared, or read while earlier frames were sent)
            await asyncio.wait_for(asyncio.shield(count), STATUS_TIMEOUT)
        return status_message(count.result())
    except Exception as exc:
        log.warning("could not count the queue for a status message: %r", exc)
        return None
