"""The service clients: answers the contract lists become typed errors, transport failures become
ServiceUnavailable (Unreachable when nothing was sent, NoAnswer when the outcome is unknown).

The servers are real, on free loopback ports: an aiohttp app that records what it was sent, and raw
sockets that accept a request and then hang or hang up."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from comfy_cloud.clients import (
    DispatcherClient,
    InferenceClient,
    InstanceFull,
    InstanceNotRegistered,
    InstanceRegistration,
    NoAnswer,
    UnknownCatalogue,
    Unreachable,
    UpstreamRejected,
)
from comfy_cloud.clients.http import client_timeout
from comfy_cloud.errors import ServiceUnavailable
from services.inference.comfyui.client import ComfyUIClient, ComfyUIUnavailable, ViewNotFound

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    """The requests a test server received: (method, path with query, body, headers)."""

    requests: list[tuple[str, str, bytes, dict[str, str]]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[tuple[str, Seen]]:
    """Serve `handler` for every path on 127.0.0.1 at a free port; yields its URL and what it saw."""
    seen = Seen()

    async def recording(request: web.Request) -> web.StreamResponse:
        seen.requests.append((request.method, request.path_qs, await request.read(), dict(request.headers)))
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recording)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


def answering(status: int, body: object = None) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(body if body is not None else {}, status=status)

    return handler


@contextlib.asynccontextmanager
async def raw_server(on_request: Callable[[asyncio.StreamReader], Awaitable[None]]) -> AsyncIterator[str]:
    """A TCP server that reads the request head, then does `on_request` instead of answering, and
    hangs up."""

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await on_request(reader)
        writer.close()

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()


async def hang(reader: asyncio.StreamReader) -> None:
    await reader.read()  # until the client gives up


async def hang_up(reader: asyncio.StreamReader) -> None:
    pass


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_hand_off_maps_the_contracts_answers() -> None:
    job = uuid.uuid4()
    async with InferenceClient() as client:
        async with serving(answering(202)) as (url, _):
            await client.hand_off(url, job, 1)
        async with serving(answering(409)) as (url, _):
            with pytest.raises(InstanceFull):
                await client.hand_off(url, job, 1)
        async with serving(answering(500, {"boom": 1})) as (url, _):
            with pytest.raises(UpstreamRejected) as raised:
                await client.hand_off(url, job, 1)
            assert raised.value.status == 500 and raised.value.status_code == 502
            assert '{"boom": 1}' in str(raised.value) and f"POST {url}/jobs" in str(raised.value)
        async with serving(answering(404)) as (url, _):
            assert await client.interrupt(url, job, "cancel") is False


async def test_hand_off_sends_the_job_and_attempt() -> None:
    job = uuid.uuid4()
    async with serving(answering(202)) as (url, seen), InferenceClient() as client:
        await client.hand_off(f"{url}/", job, 2)
        assert await client.interrupt(url, job, "timeout") is True
    (method, path, body, _), (_, interrupt_path, interrupt_body, _) = seen.requests
    assert (method, path) == ("POST", "/jobs")
    assert json.loads(body) == {"job_id": str(job), "attempt": 2}
    assert interrupt_path == f"/jobs/{job}/interrupt"
    assert json.loads(interrupt_body) == {"reason": "timeout"}


async def test_requests_carry_no_origin_and_no_cookies() -> None:
    async def set_cookie(request: web.Request) -> web.Response:
        response = web.json_response({"assigned": 0}, status=202)
        response.set_cookie("session", "x")
        return response

    async with serving(set_cookie) as (url, seen), DispatcherClient(url) as client:
        await client.dispatch()
        await client.dispatch()
    for _, _, _, headers in seen.requests:
        assert "Origin" not in headers and "Cookie" not in headers


async def test_connection_refused_is_unreachable() -> None:
    async with InferenceClient() as client:
        with pytest.raises(Unreachable):
            await client.hand_off(closed_port_url(), uuid.uuid4(), 1)
    async with DispatcherClient(closed_port_url()) as dispatcher:
        with pytest.raises(Unreachable):
            await dispatcher.dispatch()


async def test_a_request_sent_but_unanswered_is_no_answer() -> None:
    timeout = client_timeout(connect=2.0, read=0.05, pool=2.0)
    async with InferenceClient(timeout=timeout) as client:
        async with raw_server(hang) as url:
            with pytest.raises(NoAnswer):
                await client.hand_off(url, uuid.uuid4(), 1)
        async with raw_server(hang_up) as url:
            with pytest.raises(NoAnswer):
                await client.hand_off(url, uuid.uuid4(), 1)


async def test_a_slow_answer_is_no_answer() -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(0.5)
        return web.json_response({}, status=202)

    async with serving(slow) as (url, _):
        timeout = client_timeout(connect=2.0, read=0.05, pool=2.0)
        async with InferenceClient(timeout=timeout) as client:
            with pytest.raises(NoAnswer):
                await client.hand_off(url, uuid.uuid4(), 1)


async def test_dispatcher_client_maps_the_contracts_answers() -> None:
    registration = InstanceRegistration(id=uuid.uuid4(), address="http://i", capacity=1, catalogue_hash="abc")
    async with (
        serving(answering(409, {"error": "unknown catalogue"})) as (url, _),
        DispatcherClient(url) as c,
    ):
        with pytest.raises(UnknownCatalogue):
            await c.register(registration)
    async with serving(answering(404)) as (url, _), DispatcherClient(url) as c:
        with pytest.raises(InstanceNotRegistered):
            await c.heartbeat(registration.id, healthy=True, running=[])
    async with serving(answering(503)) as (url, _), DispatcherClient(url) as c:
        with pytest.raises(ServiceUnavailable):
            await c.cancel(uuid.uuid4())
    async with serving(answering(418)) as (url, _), DispatcherClient(url) as c:
        with pytest.raises(UpstreamRejected):
            await c.cancel(uuid.uuid4())
    job = uuid.uuid4()
    answer = {"jobs": {str(job): "cancelling"}}
    async with serving(answering(200, answer)) as (url, seen), DispatcherClient(url) as c:
        assert await c.heartbeat(registration.id, healthy=True, running=[job]) == {job: "cancelling"}
    assert json.loads(seen.requests[0][2]) == {"healthy": True, "running": [str(job)]}


async def test_comfyui_view_streams_and_maps_errors() -> None:
    body = bytes(range(256)) * 1024

    async def view(request: web.Request) -> web.Response:
        if request.query["filename"] == "gone.png":
            return web.Response(status=404, text="404: Not Found")
        if request.query["filename"] == "broken.png":
            return web.Response(status=500)
        return web.Response(body=body, content_type="image/png")

    async with serving(view) as (url, seen):
        comfy = ComfyUIClient(url)
        try:
            async with comfy.view("a b+c.png", "sub", "output") as stream:
                assert stream.headers.get("content-type") == "image/png"
                received = b"".join([chunk async for chunk in stream.aiter_bytes()])
            assert received == body
            with pytest.raises(ViewNotFound):
                async with comfy.view("gone.png", "", "temp"):
                    pass
            with pytest.raises(ComfyUIUnavailable):
                async with comfy.view("broken.png", "", "temp"):
                    pass
        finally:
            await comfy.aclose()
    _, path, _, headers = seen.requests[0]
    assert path == "/api/view?filename=a+b%2Bc.png&subfolder=sub&type=output"
    assert "Origin" not in headers and headers["User-Agent"] == "comfy-cloud-inference"
    comfy = ComfyUIClient(closed_port_url())
    try:
        with pytest.raises(ComfyUIUnavailable):
            await comfy.object_info()
        assert await comfy.alive() is False
    finally:
        await comfy.aclose()
