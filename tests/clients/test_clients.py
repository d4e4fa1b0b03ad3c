"""The service clients: answers the contract lists become typed errors, transport failures become
ServiceUnavailable (Unreachable when nothing was sent, NoAnswer when the outcome is unknown)."""

from __future__ import annotations

import asyncio
import socket
import uuid

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

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
from comfy_cloud.errors import ServiceUnavailable
from tests.dispatcher.fake_instance import serve


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def answering(status: int, body: object = None) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, json=body if body is not None else {}))


async def test_hand_off_maps_the_contracts_answers() -> None:
    job = uuid.uuid4()
    async with InferenceClient(transport=answering(202)) as client:
        await client.hand_off("http://instance", job, 1)
    async with InferenceClient(transport=answering(409)) as client:
        with pytest.raises(InstanceFull):
            await client.hand_off("http://instance", job, 1)
    async with InferenceClient(transport=answering(500, {"boom": 1})) as client:
        with pytest.raises(UpstreamRejected) as raised:
            await client.hand_off("http://instance", job, 1)
        assert raised.value.status == 500 and raised.value.status_code == 502
    async with InferenceClient(transport=answering(404)) as client:
        assert await client.interrupt("http://instance", job, "cancel") is False


async def test_hand_off_sends_the_job_and_attempt() -> None:
    seen: list[tuple[str, bytes]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.content))
        return httpx.Response(202)

    job = uuid.uuid4()
    async with InferenceClient(transport=httpx.MockTransport(handler)) as client:
        await client.hand_off("http://instance:8082/", job, 2)
        assert await client.interrupt("http://instance:8082", job, "timeout") is True
    assert seen[0][0] == "http://instance:8082/jobs"
    assert b'"attempt":2' in seen[0][1].replace(b" ", b"")
    assert seen[1] == (f"http://instance:8082/jobs/{job}/interrupt", b'{"reason":"timeout"}')


async def test_connection_refused_is_unreachable() -> None:
    async with InferenceClient() as client:
        with pytest.raises(Unreachable):
            await client.hand_off(closed_port_url(), uuid.uuid4(), 1)
    async with DispatcherClient(closed_port_url()) as dispatcher:
        with pytest.raises(ServiceUnavailable):
            await dispatcher.dispatch()


async def test_a_request_sent_but_unanswered_is_no_answer() -> None:
    async def slow(request: Request) -> JSONResponse:
        await asyncio.sleep(0.5)
        return JSONResponse({}, status_code=202)

    app = Starlette(routes=[Route("/jobs", slow, methods=["POST"])])
    async with serve(app) as url:
        timeout = httpx.Timeout(connect=2.0, read=0.05, write=2.0, pool=2.0)
        async with InferenceClient(timeout=timeout) as client:
            with pytest.raises(NoAnswer):
                await client.hand_off(url, uuid.uuid4(), 1)


async def test_dispatcher_client_maps_the_contracts_answers() -> None:
    registration = InstanceRegistration(id=uuid.uuid4(), address="http://i", capacity=1, catalogue_hash="abc")
    async with DispatcherClient("http://d", transport=answering(409, {"error": "unknown catalogue"})) as c:
        with pytest.raises(UnknownCatalogue):
            await c.register(registration)
    async with DispatcherClient("http://d", transport=answering(404)) as c:
        with pytest.raises(InstanceNotRegistered):
            await c.heartbeat(registration.id, healthy=True, running=[])
    async with DispatcherClient("http://d", transport=answering(503)) as c:
        with pytest.raises(ServiceUnavailable):
            await c.cancel(uuid.uuid4())
    job = uuid.uuid4()
    answer = {"jobs": {str(job): "cancelling"}}
    async with DispatcherClient("http://d", transport=answering(200, answer)) as c:
        assert await c.heartbeat(registration.id, healthy=True, running=[job]) == {job: "cancelling"}


async def test_nudges_are_fire_and_forget_and_coalesce() -> None:
    calls = 0
    release = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        await release.wait()
        return httpx.Response(202, json={"assigned": 0})

    async with DispatcherClient("http://d", transport=httpx.MockTransport(handler)) as client:
        for _ in range(10):
            await client.nudge()  # returns at once, while the first is in flight
        task = client._nudge_task
        assert task is not None
        release.set()
        await asyncio.wait_for(asyncio.shield(task), 5)
    assert calls == 2  # the first, and one more for the nine that came meanwhile


async def test_a_nudge_to_a_dead_dispatcher_is_lost_quietly() -> None:
    async with DispatcherClient(closed_port_url()) as client:
        await client.nudge()
        assert client._nudge_task is not None
        await asyncio.wait_for(asyncio.shield(client._nudge_task), 5)
