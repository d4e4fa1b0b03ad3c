"""The one WebSocket from this instance to its ComfyUI, kept alive and routed per prompt.

- The client id is this process's own, reused on every reconnect so that ComfyUI keeps addressing the
  prompts submitted with it to us. A reconnect starts only after the old socket has closed: with the
  same clientId, closing the old socket after the new one registered would unregister the new one
  (protocol reference §4.1 item 6).
- The first client message is `feature_flags`, so previews arrive as type-4 frames carrying their
  prompt_id (§4.4). ComfyUI itself sends no heartbeat: our pings find a dead socket.
- Messages are routed to the subscriber of their `prompt_id`. Those without one belong to the prompt
  executing now: progress text (type 3, always broadcast), legacy previews (type 1) and the
  `executing {node}` ComfyUI sends on reconnect. `status` is dropped (the worker's queue means nothing
  to users).
- Each subscriber also gets CONNECTED / DISCONNECTED signals: after a gap the runner asks ComfyUI over
  HTTP what happened meanwhile, since messages sent while no socket was registered are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass
from enum import Enum
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from comfy_cloud.comfyui import frames

log = logging.getLogger(__name__)

CLIENT_FLAGS = {"supports_preview_metadata": True}
_RECONNECT_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0)


class Signal(Enum):
    CONNECTED = "connected"  # (re)connected: events may have been lost before this
    DISCONNECTED = "disconnected"
    WAKE = "wake"  # something outside the socket wants the runner's attention (interrupt, restart)


@dataclass(frozen=True, slots=True)
class Message:
    """A ComfyUI text message (`type`, `data`), or a binary frame decoded (type "b_preview",
    "b_progress_text") with its bytes in `blob`."""

    type: str
    data: dict[str, Any]
    blob: bytes | None = None


Item = Message | Signal

PREVIEW = "b_preview"
PROGRESS_TEXT = "b_progress_text"


class SocketFollower:
    def __init__(
        self,
        url: str,
        *,
        ping_interval: float = 10.0,
        ping_timeout: float = 10.0,
        open_timeout: float = 10.0,
    ) -> None:
        self.url = url
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._open_timeout = open_timeout
        self._subscribers: dict[str, asyncio.Queue[Item]] = {}
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._current: str | None = None  # the prompt ComfyUI is executing, as far as we heard
        self._node: str | None = None  # and its node (for legacy previews, which name neither)
        self.connected = asyncio.Event()
        self.server_flags: dict[str, Any] = {}
        self.connections = 0  # successful connects so far
        self.last_reconnect_request = 0.0

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="comfyui-socket")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def reconnect(self) -> None:
        """Drop the socket and open a new one (a socket ComfyUI stopped addressing stays silent)."""
        self.last_reconnect_request = time.monotonic()
        ws = self._ws
        if ws is not None:
            await ws.close()

    # -- subscriptions -----------------------------------------------------------------------------

    def subscribe(self, prompt_id: str) -> asyncio.Queue[Item]:
        queue: asyncio.Queue[Item] = asyncio.Queue()
        self._subscribers[prompt_id] = queue
        return queue

    def unsubscribe(self, prompt_id: str) -> None:
        self._subscribers.pop(prompt_id, None)
        if self._current == prompt_id:
            self._current = None

    def _signal(self, signal: Signal) -> None:
        for queue in self._subscribers.values():
            queue.put_nowait(signal)

    # -- the connection loop -----------------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                async with connect(
                    self.url,
                    ping_interval=self._ping_interval,
                    ping_timeout=self._ping_timeout,
                    open_timeout=self._open_timeout,
                    close_timeout=5,
                    max_size=None,  # full-size PNG previews (SaveImageWebsocket) are large
                    # ComfyUI is on loopback or in the cluster: permessage-deflate would only cost CPU
                    # on both sides for every message (a third of this socket's receive cost here).
                    compression=None,
                    proxy=None,
                    origin=None,  # never an Origin: a loopback ComfyUI refuses mismatches (§1.2)
                ) as ws:
                    failures = 0
                    await self._session(ws)
                # Leaving the block waited for the close: only now may a new socket register.
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
                # Once per outage at INFO; the retries every few seconds after that at DEBUG.
                level = logging.INFO if failures == 0 else logging.DEBUG
                log.log(level, "ComfyUI socket: %s: %s", type(exc).__name__, exc)
            except Exception:
                log.exception("ComfyUI socket: unexpected failure")
            finally:
                self._ws = None
                if self.connected.is_set():
                    self.connected.clear()
                    self._signal(Signal.DISCONNECTED)
            failures += 1
            await asyncio.sleep(_RECONNECT_DELAYS[min(failures, len(_RECONNECT_DELAYS)) - 1])

    async def _session(self, ws: ClientConnection) -> None:
        await ws.send(json.dumps({"type": "feature_flags", "data": CLIENT_FLAGS}))
        self._ws = ws
        self.connections += 1
        self.connected.set()
        log.info("ComfyUI socket connected (%s)", "first" if self.connections == 1 else "reconnected")
        self._signal(Signal.CONNECTED)
        async for raw in ws:
            if isinstance(raw, bytes):
                self._on_binary(raw)
            else:
                self._on_text(raw)

    # -- routing -----------------------------------------------------------------------------------

    def _on_text(self, raw: str) -> None:
        try:
            message = json.loads(raw)
            kind, data = message["type"], message.get("data") or {}
        except (ValueError, KeyError, TypeError):
            log.warning("ComfyUI socket: ignoring a malformed message")
            return
        if kind == "status" or not isinstance(data, dict):
            return
        if kind == "feature_flags":
            self.server_flags = data
            return
        prompt_id = data.get("prompt_id")
        if prompt_id is None and kind == "executing" and self._current is not None:
            # Sent on reconnect for the prompt running for our client id, without its id (§4.1).
            prompt_id = self._current
            data = {**data, "prompt_id": prompt_id}
        if not isinstance(prompt_id, str):
            return
        self._track(kind, data, prompt_id)
        self._deliver(prompt_id, Message(kind, data))

    def _track(self, kind: str, data: dict[str, Any], prompt_id: str) -> None:
        if kind == "executing" and data.get("node") is None:
            if self._current == prompt_id:
                self._current = self._node = None
        elif kind in ("execution_start", "executing", "progress", "progress_state"):
            self._current = prompt_id
            if kind == "executing":
                self._node = data.get("node")

    def _on_binary(self, raw: bytes) -> None:
        try:
            frame = frames.decode_frame(raw)
        except ValueError as exc:
            log.warning("ComfyUI socket: ignoring a binary frame: %s", exc)
            return
        prompt_id = frame.prompt_id or self._current
        if prompt_id is None:
            return
        if frame.event_type == frames.TEXT:
            self._deliver(prompt_id, Message(PROGRESS_TEXT, {"node_id": frame.node_id}, frame.payload))
            return
        metadata = dict(frame.metadata or {})
        metadata.setdefault("node_id", self._node)
        metadata.setdefault("prompt_id", prompt_id)
        if frame.image_type:
            metadata.setdefault("image_type", frame.image_type)
        self._deliver(prompt_id, Message(PREVIEW, metadata, frame.payload))

    def _deliver(self, prompt_id: str, message: Message) -> None:
        queue = self._subscribers.get(prompt_id)
        if queue is not None:
            queue.put_nowait(message)
