"""SocketFollower against a tiny in-process aiohttp server standing in for ComfyUI's /ws: the first
message, routing, signals, reconnects that wait for the old socket to close, the heartbeat's timing
and the opening timeout."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import WSMsgType, web

from comfy_cloud.comfyui import frames
from services.inference.comfyui.socket import (
    CLIENT_FLAGS,
    PREVIEW,
    PROGRESS_TEXT,
    Message,
    Signal,
    SocketFollower,
)
from tests.inference.conftest import wait_for


@dataclass
class FakeComfy:
    """ComfyUI's /ws, reduced: greets with `status`, records what happens, answers pings unless told."""

    autoping: bool = True
    hold_close: float = 0.0  # how long the server takes to answer a close frame
    log: list[str] = field(default_factory=list)
    received: list[Any] = field(default_factory=list)
    client_ids: list[str] = field(default_factory=list)
    sockets: list[web.WebSocketResponse] = field(default_factory=list)
    transports: list[asyncio.Transport] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=self.autoping, autoclose=False, max_msg_size=0)
        await ws.prepare(request)
        n = len(self.client_ids)
        self.client_ids.append(request.query["clientId"])
        self.log.append(f"open {n}")
        self.sockets.append(ws)
        self.transports.append(request.transport)  # type: ignore[arg-type]
        await ws.send_json({"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}}})
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    self.received.append(json.loads(msg.data))
        finally:
            await asyncio.sleep(self.hold_close)
            self.log.append(f"closed {n}")  # ComfyUI unregisters the socket, then answers the close
            await ws.close()
        return ws

    async def send(self, message: dict[str, Any] | bytes) -> None:
        ws = self.sockets[-1]
        if isinstance(message, bytes):
            await ws.send_bytes(message)
        else:
            await ws.send_json(message)


@pytest.fixture
async def comfy() -> AsyncIterator[FakeComfy]:
    fake = FakeComfy()
    app = web.Application()
    app.router.add_get("/ws", fake.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"ws://127.0.0.1:{port}/ws?clientId=cc-test"
    yield fake
    await runner.cleanup()


@pytest.fixture
async def follow(comfy: FakeComfy) -> AsyncIterator[Callable[..., SocketFollower]]:
    followers: list[SocketFollower] = []

    def make(**options: Any) -> SocketFollower:
        follower = SocketFollower(comfy.url, **{"ping_interval": 5.0, "ping_timeout": 5.0, **options})
        follower.start()
        followers.append(follower)
        return follower

    yield make
    for follower in followers:
        await follower.stop()


async def next_item(queue: asyncio.Queue, within: float = 5.0) -> Any:
    return await asyncio.wait_for(queue.get(), within)


async def test_feature_flags_first_then_routing_by_prompt(comfy: FakeComfy, follow: Callable) -> None:
    follower = follow()
    inbox = follower.subscribe("p1")
    other = follower.subscribe("p2")
    await wait_for(follower.connected.is_set, 5, "the socket")
    assert await next_item(inbox) is Signal.CONNECTED
    await wait_for(lambda: comfy.received, 5, "the first client message")
    assert comfy.received[0] == {"type": "feature_flags", "data": CLIENT_FLAGS}

    await comfy.send({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
    await comfy.send({"type": "execution_start", "data": {"prompt_id": "p1"}})
    await comfy.send({"type": "executing", "data": {"node": "3", "prompt_id": "p1"}})
    await comfy.send(frames.encode_progress_text("3", "halfway"))  # no prompt_id: the current one
    await comfy.send(frames.encode_preview(b"jpeg!", "jpeg"))  # legacy preview: current prompt and node
    await comfy.send(frames.encode_preview_with_metadata(b"png!", {"prompt_id": "p2", "node_id": "9"}))
    await comfy.send({"type": "progress", "data": {"prompt_id": "p2", "value": 1, "max": 2}})
    await comfy.send({"type": "executing", "data": {"node": None, "prompt_id": "p1"}})

    got = [await next_item(inbox) for _ in range(5)]
    assert got == [
        Message("execution_start", {"prompt_id": "p1"}),
        Message("executing", {"node": "3", "prompt_id": "p1"}),
        Message(PROGRESS_TEXT, {"node_id": "3"}, b"halfway"),
        Message(PREVIEW, {"node_id": "3", "prompt_id": "p1", "image_type": "image/jpeg"}, b"jpeg!"),
        Message("executing", {"node": None, "prompt_id": "p1"}),
    ]
    assert await next_item(other) is Signal.CONNECTED
    preview = await next_item(other)
    assert preview.type == PREVIEW and preview.blob == b"png!" and preview.data["prompt_id"] == "p2"
    assert await next_item(other) == Message("progress", {"prompt_id": "p2", "value": 1, "max": 2})
    assert inbox.empty() and other.empty()  # `status` went nowhere
    assert follower.server_flags == {"supports_preview_metadata": True}


async def test_reconnect_waits_for_the_old_socket_to_close(comfy: FakeComfy, follow: Callable) -> None:
    comfy.hold_close = 0.3  # ComfyUI is slow to finish with the old socket
    follower = follow()
    inbox = follower.subscribe("p1")
    await wait_for(follower.connected.is_set, 5, "the socket")
    assert await next_item(inbox) is Signal.CONNECTED
    await comfy.send({"type": "executing", "data": {"node": "5", "prompt_id": "p1"}})
    assert (await next_item(inbox)).type == "executing"

    await follower.reconnect()
    await wait_for(lambda: follower.connections == 2 and follower.connected.is_set(), 5, "a reconnect")
    assert await next_item(inbox) is Signal.DISCONNECTED
    assert await next_item(inbox) is Signal.CONNECTED
    assert comfy.log == ["open 0", "closed 0", "open 1"]
    assert comfy.client_ids == ["cc-test", "cc-test"]  # the same clientId
    assert [m["type"] for m in comfy.received] == ["feature_flags", "feature_flags"]
    # ComfyUI's `executing` on reconnect names no prompt: it is the one running.
    await comfy.send({"type": "executing", "data": {"node": "5"}})
    assert await next_item(inbox) == Message("executing", {"node": "5", "prompt_id": "p1"})


async def test_server_close_reconnects_quietly(
    comfy: FakeComfy, follow: Callable, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="services.inference.comfyui.socket")
    follower = follow()
    await wait_for(follower.connected.is_set, 5, "the socket")
    await comfy.sockets[-1].close()
    await wait_for(lambda: follower.connections == 2 and follower.connected.is_set(), 5, "a reconnect")
    comfy.transports[-1].abort()  # cut, without a closing handshake (ComfyUI killed)
    await wait_for(lambda: follower.connections == 3 and follower.connected.is_set(), 5, "a reconnect")
    assert comfy.log[:4] == ["open 0", "closed 0", "open 1", "closed 1"]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING]


async def test_unanswered_pings_drop_the_socket_after_interval_plus_timeout(
    comfy: FakeComfy, follow: Callable
) -> None:
    comfy.autoping = False  # a peer that never answers: a dead ComfyUI, as far as pings go
    follower = follow(ping_interval=0.3, ping_timeout=0.6)
    await wait_for(follower.connected.is_set, 5, "the socket")
    # The greeting `status` arrived at connect: the ping goes out 0.3 s after it and the socket is
    # dropped when its pong is 0.6 s late.
    opened = time.monotonic()
    await wait_for(lambda: not follower.connected.is_set(), 5, "the socket to be dropped")
    assert 0.75 <= time.monotonic() - opened <= 2.0
    await wait_for(lambda: follower.connections == 2, 5, "a reconnect")


async def test_answered_pings_keep_a_quiet_socket(comfy: FakeComfy, follow: Callable) -> None:
    follower = follow(ping_interval=0.2, ping_timeout=0.2)
    await wait_for(follower.connected.is_set, 5, "the socket")
    await asyncio.sleep(1.2)
    assert follower.connections == 1 and follower.connected.is_set()


async def test_open_timeout(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="services.inference.comfyui.socket")

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # accepts, never answers the handshake

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    follower = SocketFollower(f"ws://127.0.0.1:{port}/ws?clientId=x", open_timeout=0.3)
    follower.start()
    try:
        await wait_for(lambda: any("TimeoutError" in r.getMessage() for r in caplog.records), 5, "a timeout")
        assert not follower.connected.is_set()
        assert not [r for r in caplog.records if r.exc_info]
    finally:
        await follower.stop()
        server.close()


async def test_stop_during_a_reconnect(comfy: FakeComfy, follow: Callable) -> None:
    comfy.hold_close = 1.0
    follower = follow()
    await wait_for(follower.connected.is_set, 5, "the socket")
    reconnecting = asyncio.create_task(follower.reconnect())
    await asyncio.sleep(0.1)
    await follower.stop()
    await asyncio.wait_for(reconnecting, 5)  # neither cancelled nor left hanging
    assert not follower.connected.is_set() and follower.connections == 1
