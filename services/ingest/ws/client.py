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
        if frame.status is not None:
            text = await _status_text(frame.status)
            if text is None:
                return True  # the count failed or was late: skip this one, a later status follows
            frame = Frame(text=text)
        try:
            if frame.data is not None:
                await asyncio.wait_for(self.websocket.send_bytes(frame.data), self.send_timeout)
            elif frame.text is not None:
                await asyncio.wait_for(self.websocket.send_text(frame.text), self.send_timeout)
        except TimeoutError:
            log.warning(
                "closing a WebSocket whose send blocked for %.0f s (sid %s)", self.send_timeout, self.sid
            )
            return False
        except Exception:
            return False  # disconnected
        return True

    async def write_forever(self) -> None:
        while True:
            frame = await self.outbox.get()
            if not await self.send_now(frame):
                self.stuck.set()
                return

    async def close(self, code: int = 1000) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.websocket.close(code=code), 1.0)


async def _status_text(count: asyncio.Future[int]) -> str | None:
    try:
        return status_message(await asyncio.wait_for(asyncio.shield(count), STATUS_TIMEOUT))
    except Exception as exc:
        log.warning("could not count the queue for a status message: %r", exc)
        return None
