"""WebSocket clients and message addressing, as ComfyUI's PromptServer does it (§4.1, §4.3).

- The registry maps a sid to the socket registered last under it. A second socket with the same
  clientId replaces the first in the registry without closing it; when either closes, the sid is
  removed, so the survivor stops receiving anything (the recorded duplicate-clientId quirk).
- `sid=None` means broadcast to every registered socket.
- Sending never waits: each socket collects its frames and writes them out in one go on the next turn
  of the event loop, so a slow reader never stalls execution and every socket sees messages in
  emission order. One write per burst rather than one per message is most of the saving: a prompt
  emits its messages in bursts, and each write is a system call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

TEXT, BINARY = 0x1, 0x2


def wire_frame(message: str | bytes) -> bytes:
    """One unmasked, unfragmented, uncompressed server frame (RFC 6455 §5.2), as aiohttp writes it."""
    payload, opcode = (message.encode(), TEXT) if isinstance(message, str) else (message, BINARY)
    size = len(payload)
    if size < 126:
        header = bytes((0x80 | opcode, size))
    elif size < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return header + payload


@dataclass(eq=False)
class Client:
    sid: str
    ws: web.WebSocketResponse
    # The connection's transport: frames are written to it directly (the handshake, reading, pings and
    # closing stay with aiohttp), and /_sim/drop_sockets cuts it.
    transport: asyncio.Transport | None
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    pending: list[bytes] = field(default_factory=list)

    def push(self, frame: bytes) -> None:
        """Queue one encoded frame (see wire_frame); the first of a burst schedules the write."""
        if not self.pending:
            self.loop.call_soon(self.flush)
        self.pending.append(frame)

    def flush(self) -> None:
        frames, self.pending = self.pending, []
        transport = self.transport
        if not frames or transport is None or transport.is_closing() or self.ws.closed:
            return  # the peer went away or the close handshake began: nothing more may be sent
        transport.write(b"".join(frames) if len(frames) > 1 else frames[0])

    def abort(self) -> None:
        self.pending.clear()
        if self.transport is not None:
            self.transport.abort()  # no close frame: the peer sees the connection drop


class Hub:
    def __init__(self) -> None:
        self.sockets: dict[str, Client] = {}
        self.flags: dict[str, dict[str, Any]] = {}  # sid -> the client's feature flags
        self.connections: set[Client] = set()  # every open socket, registered or not
        self.messages_sent = 0

    # -- registry ------------------------------------------------------------------------------------
    def register(self, sid: str, ws: web.WebSocketResponse, transport: asyncio.Transport | None) -> Client:
        client = Client(sid, ws, transport)
        self.sockets[sid] = client
        self.flags[sid] = {}
        self.connections.add(client)
        return client

    def unregister(self, client: Client) -> None:
        # Pops the sid even if a newer socket owns it now: ComfyUI's quirk, kept on purpose.
        self.sockets.pop(client.sid, None)
        self.flags.pop(client.sid, None)
        self.connections.discard(client)
        # Frames already queued still go out if the connection is open, as they would have before.

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
        self._send(wire_frame(json.dumps({"type": event, "data": data})), sid)

    def send_bytes(self, frame: bytes, sid: str | None) -> None:
        if self.has_recipient(sid):
            self._send(wire_frame(frame), sid)

    def send_to(self, client: Client, event: str, data: Any) -> None:
        """To one socket object, registered or not (the on-connect status)."""
        client.push(wire_frame(json.dumps({"type": event, "data": data})))
        self.messages_sent += 1

    def _send(self, frame: bytes, sid: str | None) -> None:
        # Encoded once, however many sockets get it (status broadcasts go to all of them).
        if sid is None:
            for client in list(self.sockets.values()):
                client.push(frame)
                self.messages_sent += 1
        elif (client := self.sockets.get(sid)) is not None:
            client.push(frame)
            self.messages_sent += 1

    async def close_all(self, code: int, wait: float) -> None:
        """Close every socket with a close frame (server shutdown); abort those that do not answer."""
        clients = list(self.connections)
        for client in clients:
            if client.pending:
                client.flush()  # what was queued goes out before the close frame
        closing = [asyncio.ensure_future(client.ws.close(code=code)) for client in clients]
        if closing:
            await asyncio.wait(closing, timeout=wait)
        for client, task in zip(clients, closing, strict=True):
            if task.done():
                if not task.cancelled():
                    task.exception()  # retrieved: a peer that went away is nothing to report
                continue
            task.cancel()
            client.abort()

    # -- failure injection ---------------------------------------------------------------------------
    async def drop_all(self, code: int = 1011) -> int:
        """Cut every socket at the TCP level (no close frame) where the server allows it."""
        clients = list(self.connections)
        for client in clients:
            if client.transport is not None and not client.transport.is_closing():
                client.abort()
            else:
                with contextlib.suppress(Exception):
                    await client.ws.close(code=code)
        return len(clients)
