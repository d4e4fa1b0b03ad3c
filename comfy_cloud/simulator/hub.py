"""WebSocket clients and message addressing, as ComfyUI's PromptServer does it (§4.1, §4.3).

- The registry maps a sid to the socket registered last under it. A second socket with the same
  clientId replaces the first in the registry without closing it; when either closes, the sid is
  removed, so the survivor stops receiving anything (the recorded duplicate-clientId quirk).
- `sid=None` means broadcast to every registered socket.
- Each socket has its own outgoing queue and writer task, so a slow reader never stalls execution and
  every socket sees messages in emission order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from starlette.websockets import WebSocket

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Client:
    sid: str
    ws: WebSocket
    outbox: asyncio.Queue[str | bytes | None] = field(default_factory=asyncio.Queue)
    writer: asyncio.Task[None] | None = None

    def push(self, frame: str | bytes) -> None:
        self.outbox.put_nowait(frame)

    async def write_loop(self) -> None:
        try:
            while (frame := await self.outbox.get()) is not None:
                if isinstance(frame, bytes):
                    await self.ws.send_bytes(frame)
                else:
                    await self.ws.send_text(frame)
        except Exception:  # the peer went away; the reader side cleans up
            log.debug("websocket %s: send failed", self.sid, exc_info=True)


class Hub:
    def __init__(self) -> None:
        self.sockets: dict[str, Client] = {}
        self.flags: dict[str, dict[str, Any]] = {}  # sid -> the client's feature flags
        self.connections: set[Client] = set()  # every open socket, registered or not
        self.messages_sent = 0

    # -- registry ------------------------------------------------------------------------------------
    def register(self, sid: str, ws: WebSocket) -> Client:
        client = Client(sid, ws)
        client.writer = asyncio.get_running_loop().create_task(client.write_loop())
        self.sockets[sid] = client
        self.flags[sid] = {}
        self.connections.add(client)
        return client

    def unregister(self, client: Client) -> None:
        # Pops the sid even if a newer socket owns it now: ComfyUI's quirk, kept on purpose.
        self.sockets.pop(client.sid, None)
        self.flags.pop(client.sid, None)
        self.connections.discard(client)
        client.outbox.put_nowait(None)  # the writer stops after what is already queued

    def set_flags(self, sid: str, flags: dict[str, Any]) -> None:
        if sid in self.flags:
            self.flags[sid] = flags

    def supports_preview_metadata(self, sid: str | None) -> bool:
        return sid is not None and bool(self.flags.get(sid, {}).get("supports_preview_metadata", False))

    def has_recipient(self, sid: str | None) -> bool:
        return bool(self.sockets) if sid is None else sid in self.sockets

    # -- sending -------------------------------------------------------------------------------------
    def send_json(self, event: str, data: Any, sid: str | None) -> None:
        if not self.has_recipient(sid):
            return
        self._send(json.dumps({"type": event, "data": data}), sid)

    def send_bytes(self, frame: bytes, sid: str | None) -> None:
        self._send(frame, sid)

    def send_to(self, client: Client, event: str, data: Any) -> None:
        """To one socket object, registered or not (the on-connect status)."""
        client.push(json.dumps({"type": event, "data": data}))
        self.messages_sent += 1

    def _send(self, frame: str | bytes, sid: str | None) -> None:
        if sid is None:
            for client in list(self.sockets.values()):
                client.push(frame)
                self.messages_sent += 1
        elif (client := self.sockets.get(sid)) is not None:
            client.push(frame)
            self.messages_sent += 1

    # -- failure injection ---------------------------------------------------------------------------
    async def drop_all(self, code: int = 1011) -> int:
        """Cut every socket at the TCP level (no close frame) where the server allows it."""
        clients = list(self.connections)
        for client in clients:
            await _abort(client, code)
        return len(clients)


async def _abort(client: Client, code: int) -> None:
    if client.writer is not None:
        client.writer.cancel()
    # uvicorn's send is a bound method of its protocol; the transport lets us drop the TCP connection.
    protocol = getattr(client.ws.scope.get("simulator.server_send"), "__self__", None)
    transport = getattr(protocol, "transport", None)
    if transport is not None and hasattr(transport, "abort"):
        transport.abort()
        return
    with contextlib.suppress(Exception):
        await client.ws.close(code)
