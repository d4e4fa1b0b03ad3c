"""A local stand-in for Supabase Realtime, speaking the protocol the `realtime` Python client uses.

Phoenix channels, JSON serializer v1 (`vsn=1.0.0`), over a WebSocket at `/realtime/v1/websocket`:
every frame is `{"topic", "event", "payload", "ref", "join_ref"}`.
* `heartbeat` on topic `phoenix`       -> `phx_reply` {"status": "ok"}
* `phx_join` on `realtime:<channel>`   -> `phx_reply` ok with {"postgres_changes": []}; the join's
                                          config (broadcast.self, broadcast.ack) is remembered; a
                                          private join needs `access_token` equal to the API key
* `broadcast`                          -> sent to every socket that joined the topic (to the sender
                                          only with broadcast.self), as `broadcast` with ref null;
                                          with broadcast.ack the sender gets `phx_reply` ok. A payload
                                          over `max_payload_bytes` is refused (error reply), like the
                                          plan limit of real Realtime (256 KB on Free).
* `phx_leave`                          -> `phx_reply` ok; `access_token` is accepted and ignored.
The API key must match (query `apikey`), else the upgrade is refused with 403. The HTTP broadcast
endpoint (POST /realtime/v1/api/broadcast) is not served: the broadcaster sends over the socket.

    async with FakeRealtime(api_key="k") as fake:
        broadcaster = SupabaseBroadcaster(fake.url, "k")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from http import HTTPStatus
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

log = logging.getLogger(__name__)

WEBSOCKET_PATH = "/realtime/v1/websocket"


@dataclass(eq=False)
class _Join:
    connection: ServerConnection
    topic: str
    join_ref: str | None
    receive_own: bool
    ack: bool


@dataclass
class FakeRealtimeStats:
    connections: int = 0
    joins: int = 0
    broadcasts: int = 0
    refused: int = 0
    largest_payload: int = 0
    payload_sizes: list[int] = field(default_factory=list)


class FakeRealtime:
    def __init__(self, *, api_key: str = "test-key", max_payload_bytes: int = 256 * 1024) -> None:
        self.api_key = api_key
        self.max_payload_bytes = max_payload_bytes
        self.stats = FakeRealtimeStats()
        self._server: Server | None = None
        self._joins: dict[str, list[_Join]] = {}
        self._connections: set[ServerConnection] = set()

    @property
    def url(self) -> str:
        """The Supabase project URL to give the client (it derives the WebSocket URL from it)."""
        if self._server is None:
            raise RuntimeError("not started")
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def start(self) -> FakeRealtime:
        # A frame may exceed the payload limit: read it (up to 8 MiB) and refuse it with a reply.
        # No permessage-deflate: Phoenix sockets do not compress by default, so Realtime does not.
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._check_request,
            max_size=8 << 20,
            compression=None,
        )
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def drop_connections(self) -> None:
        """Close every client socket abruptly (no close frame), as a crashed server would."""
        for connection in list(self._connections):
            connection.transport.abort()

    async def __aenter__(self) -> FakeRealtime:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path != WEBSOCKET_PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        query = parse_qs(url.query)
        if query.get("apikey", [None])[0] != self.api_key:
            return connection.respond(HTTPStatus.FORBIDDEN, "invalid apikey\n")
        if query.get("vsn", ["1.0.0"])[0] != "1.0.0":
            return connection.respond(HTTPStatus.BAD_REQUEST, "unsupported vsn\n")
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        self._connections.add(connection)
        self.stats.connections += 1
        try:
            async for raw in connection:
                try:
                    message = json.loads(raw)
                except ValueError:
                    continue
                await self._dispatch(connection, message)
        except ConnectionClosed:
            pass
        finally:
            self._connections.discard(connection)
            for joins in self._joins.values():
                joins[:] = [j for j in joins if j.connection is not connection]

    async def _dispatch(self, connection: ServerConnection, message: dict[str, Any]) -> None:
        topic = message.get("topic")
        event = message.get("event")
        payload = message.get("payload") or {}
        ref = message.get("ref")
        join_ref = message.get("join_ref")
        if topic == "phoenix" and event == "heartbeat":
            await self._reply(connection, topic, ref, None, "ok", {})
        elif event == "phx_join":
            await self._join(connection, topic, ref, payload)
        elif event == "phx_leave":
            self._joins[topic] = [j for j in self._joins.get(topic, []) if j.connection is not connection]
            await self._reply(connection, topic, ref, join_ref, "ok", {})
        elif event == "broadcast":
            await self._broadcast(connection, topic, ref, join_ref, payload)
        elif event == "access_token":
            pass
        else:
            await self._reply(connection, topic, ref, join_ref, "error", {"reason": f"unknown event {event}"})

    async def _join(
        self, connection: ServerConnection, topic: Any, ref: Any, payload: dict[str, Any]
    ) -> None:
        if not isinstance(topic, str) or not topic.startswith("realtime:"):
            await self._reply(connection, topic, ref, ref, "error", {"reason": "invalid topic"})
            return
        token = payload.get("access_token")
        config = payload.get("config") or {}
        # Private channels need a token Realtime accepts (real Realtime: a JWT whose role passes the
        # RLS policies on realtime.messages; the service-role key bypasses them).
        if (token is not None or config.get("private")) and token != self.api_key:
            await self._reply(
                connection, topic, ref, ref, "error", {"reason": "Unauthorized: invalid access token"}
            )
            return
        broadcast = config.get("broadcast") or {}
        joins = self._joins.setdefault(topic, [])
        joins[:] = [j for j in joins if j.connection is not connection]  # a rejoin replaces the join
        joins.append(
            _Join(
                connection=connection,
                topic=topic,
                join_ref=ref,
                receive_own=bool(broadcast.get("self")),
                ack=bool(broadcast.get("ack")),
            )
        )
        self.stats.joins += 1
        await self._reply(connection, topic, ref, ref, "ok", {"postgres_changes": []})

    async def _broadcast(
        self, connection: ServerConnection, topic: Any, ref: Any, join_ref: Any, payload: dict[str, Any]
    ) -> None:
        sender = next((j for j in self._joins.get(topic, []) if j.connection is connection), None)
        if sender is None:
            await self._reply(connection, topic, ref, join_ref, "error", {"reason": "not joined"})
            return
        size = len(json.dumps(payload.get("payload"), separators=(",", ":")).encode())
        self.stats.payload_sizes.append(size)
        self.stats.largest_payload = max(self.stats.largest_payload, size)
        if size > self.max_payload_bytes:
            self.stats.refused += 1
            await self._reply(connection, topic, ref, join_ref, "error", {"reason": "payload too large"})
            return
        self.stats.broadcasts += 1
        frame = json.dumps(
            {
                "topic": topic,
                "event": "broadcast",
                "payload": {
                    "type": "broadcast",
                    "event": payload.get("event"),
                    "payload": payload.get("payload"),
                },
                "ref": None,
            }
        )
        for join in list(self._joins.get(topic, [])):
            if join.connection is connection and not join.receive_own:
                continue
            with contextlib.suppress(ConnectionClosed):
                await join.connection.send(frame)
        if sender.ack:
            await self._reply(connection, topic, ref, join_ref, "ok", {})

    @staticmethod
    async def _reply(
        connection: ServerConnection,
        topic: Any,
        ref: Any,
        join_ref: Any,
        status: str,
        response: dict[str, Any],
    ) -> None:
        frame = {
            "topic": topic,
            "event": "phx_reply",
            "payload": {"status": status, "response": response},
            "ref": ref,
            "join_ref": join_ref,
        }
        with contextlib.suppress(ConnectionClosed):
            await connection.send(json.dumps(frame))


async def _main() -> None:  # pragma: no cover - manual use: python -m integration.support.fake_realtime
    async with FakeRealtime() as fake:
        log.warning("fake Supabase Realtime at %s (api key %r)", fake.url, fake.api_key)
        await asyncio.Event().wait()


if __name__ == "__main__":  # pragma: no cover
    logging.basicConfig()
    asyncio.run(_main())
