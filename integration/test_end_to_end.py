"""The three services as real processes, with the ComfyUI simulator and GCS (emulator) storage.

A workflow submitted to ingest completes, its events reach the owner's /ws in ComfyUI's order, and its
output downloads byte-identical to what ComfyUI wrote; runtime errors, interrupts, a killed worker
WebSocket and a ComfyUI restart mid-job each end in the right final state; another user sees nothing.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from database.engine import Database
from database.repositories.users import UserRepository
from integration.support.gcs_emulator import GCSEmulator, start_gcs_emulator
from integration.support.stack import Stack, running_stack

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures" / "comfyui"
BUCKET = "comfy-cloud-e2e"
TERMINAL = {"execution_success", "execution_error", "execution_interrupted"}
JOB_TIMEOUT = 60.0


@pytest.fixture(scope="module")
def gcs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSEmulator]:
    emulator = start_gcs_emulator(tmp_path_factory.mktemp("gcs"), buckets=[BUCKET])
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, gcs: GCSEmulator) -> Iterator[Stack]:
    env = {"STORAGE_URL": f"gs://{BUCKET}/e2e", "STORAGE_EMULATOR_HOST": gcs.host}
    with running_stack(tmp_path_factory.mktemp("stack"), env=env) as running:
        yield running


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.ingest_url, timeout=30) as http:
        yield http


async def api_key(stack: Stack, name: str) -> str:
    database = Database(stack.database_url, application_name="e2e", pool_size=1)
    try:
        async with database.session() as session:
            users = UserRepository(session)
            user = await users.get_or_create(name)
            return (await users.create_api_key(user.id)).key
    finally:
        await database.dispose()


class Socket:
    """A ComfyUI frontend-like /ws client: negotiates preview metadata and records every frame."""

    def __init__(self, stack: Stack, token: str | None = None) -> None:
        self.client_id = uuid.uuid4().hex
        query = f"clientId={self.client_id}" + (f"&token={token}" if token else "")
        self.url = stack.ingest_url.replace("http://", "ws://") + f"/ws?{query}"
        self.messages: list[dict[str, Any]] = []
        self.binary: list[bytes] = []

    async def __aenter__(self) -> Socket:
        self.ws = await websockets.connect(self.url, max_size=None)
        await self.ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._reader.cancel()
        await self.ws.close()

    async def _read(self) -> None:
        async for frame in self.ws:
            if isinstance(frame, bytes):
                self.binary.append(frame)
            else:
                self.messages.append(json.loads(frame))

    def of_job(self, prompt_id: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m.get("data", {}).get("prompt_id") == prompt_id]

    async def until_done(self, prompt_id: str, timeout: float = JOB_TIMEOUT) -> list[dict[str, Any]]:
        """The job's messages up to the closing `executing {node: null}` after a terminal event."""
        async with asyncio.timeout(timeout):
            while True:
                events = self.of_job(prompt_id)
                done = any(m["type"] in TERMINAL for m in events)
                closed = any(m["type"] == "executing" and m["data"].get("node") is None for m in events)
                if done and closed:
                    return events
                await asyncio.sleep(0.02)

    async def until(self, prompt_id: str, kind: str, timeout: float = JOB_TIMEOUT) -> None:
        async with asyncio.timeout(timeout):
            while not any(m["type"] == kind for m in self.of_job(prompt_id)):
                await asyncio.sleep(0.02)


async def submit(
    client: httpx.AsyncClient, prompt: dict[str, Any], client_id: str, headers: dict[str, str] | None = None
) -> str:
    response = await client.post(
        "/api/prompt", json={"prompt": prompt, "client_id": client_id}, headers=headers
    )
    assert response.status_code == 200, response.text
    return response.json()["prompt_id"]


async def job_status(client: httpx.AsyncClient, prompt_id: str, headers: dict[str, str] | None = None) -> str:
    response = await client.get(f"/api/jobs/{prompt_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["status"]


async def final_status(client: httpx.AsyncClient, prompt_id: str, timeout: float = JOB_TIMEOUT) -> str:
    async with asyncio.timeout(timeout):
        while (status := await job_status(client, prompt_id)) not in {"completed", "failed", "cancelled"}:
            await asyncio.sleep(0.1)
    return status


def invert(color: int, prefix: str = "e2e") -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color},
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def slow(seconds: float, color: int = 0) -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": color},
        },
        "2": {"class_type": "ProbeSleep", "inputs": {"image": ["1", 0], "seconds": seconds}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "slow"}},
    }


def shape(messages: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """(type, node) of each message, without `status` (queue counts are the gateway's own)."""
    out = []
    for m in messages:
        if m["type"] == "status":
            continue
        data = m["data"]
        node = data.get("node", data.get("node_id"))
        if m["type"] == "progress_state":
            node = tuple(sorted((k, v["state"]) for k, v in data["nodes"].items()))
        out.append((m["type"], node))
    return out


async def test_workflow_completes_with_comfyui_event_order_and_identical_output(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    recorded = json.loads((FIXTURES / "ws" / "success-fresh-0.3.64.json").read_text())
    expected = shape(
        [m["message"] for m in recorded["messages"] if m.get("client") == "A" and "message" in m]
    )
    async with Socket(stack) as socket:
        prompt_id = await submit(client, invert(0, prefix="test"), socket.client_id)
        events = await socket.until_done(prompt_id)
    assert shape(events) == expected
    assert await final_status(client, prompt_id) == "completed"

    [executed] = [m for m in events if m["type"] == "executed"]
    [item] = executed["data"]["output"]["images"]
    assert item["filename"] == f"test_00001__{prompt_id.replace('-', '')[:8]}.png"  # unique per owner
    view = await client.get("/api/view", params={"filename": item["filename"], "type": "output"})
    assert view.status_code == 200
    written = sorted((stack.data_dir / "simulator" / "0" / "output").rglob("test_*.png"))
    assert written, "the simulator wrote no file"
    assert view.content == written[-1].read_bytes()  # byte-identical to what ComfyUI wrote

    history = (await client.get(f"/api/history/{prompt_id}")).json()[prompt_id]
    assert history["outputs"]["3"]["images"] == [item]
    assert history["status"]["status_str"] == "success"


async def test_runtime_error_ends_failed_with_the_node_and_exception(
    stack: Stack, client: httpx.AsyncClient
) -> None:
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 1}},
        "2": {"class_type": "ProbeFail", "inputs": {"image": ["1", 0], "message": "boom"}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "never"}},
    }
    async with Socket(stack) as socket:
        prompt_id = await submit(client, prompt, socket.client_id)
        events = await socket.until_done(prompt_id)
    [error] = [m["data"] for m in events if m["type"] == "execution_error"]
    assert (error["node_id"], error["exception_type"], error["exception_message"]) == (
        "2",
        "RuntimeError",
        "boom\n",  # as ComfyUI sends it (ws/runtime-error-0.33.0.json)
    )
    assert await final_status(client, prompt_id) == "failed"
    detail = (await client.get(f"/api/jobs/{prompt_id}")).json()
    assert detail["execution_error"]["exception_message"] == "boom\n"


async def test_interrupt_of_a_running_job_ends_cancelled(stack: Stack, client: httpx.AsyncClient) -> None:
    async with Socket(stack) as socket:
        prompt_id = await submit(client, slow(20.0, color=2), socket.client_id)
        await socket.until(prompt_id, "progress")
        assert (await client.post("/api/interrupt", json={"prompt_id": prompt_id})).status_code == 200
        events = await socket.until_done(prompt_id, timeout=15)
    assert any(m["type"] == "execution_interrupted" for m in events)
    assert await final_status(client, prompt_id) == "cancelled"


async def test_killed_worker_websocket_does_not_lose_the_job(stack: Stack, client: httpx.AsyncClient) -> None:
    async with Socket(stack) as socket:
        prompt_id = await submit(client, slow(2.0, color=3), socket.client_id)
        await socket.until(prompt_id, "progress")
        async with httpx.AsyncClient() as sim:
            assert (await sim.post(f"{stack.simulator_url}/_sim/drop_sockets")).status_code == 200
        events = await socket.until_done(prompt_id)
    assert [m["type"] for m in events if m["type"] in TERMINAL] == ["execution_success"]
    assert await final_status(client, prompt_id) == "completed"


async def test_another_user_sees_nothing_of_a_job(stack: Stack, client: httpx.AsyncClient) -> None:
    alice, bob = await api_key(stack, "alice"), await api_key(stack, "bob")
    as_alice = {"X-API-Key": alice}
    as_bob = {"X-API-Key": bob}
    async with Socket(stack, token=alice) as alice_ws, Socket(stack, token=bob) as bob_ws:
        prompt_id = await submit(client, invert(4, prefix="alice"), alice_ws.client_id, headers=as_alice)
        events = await alice_ws.until_done(prompt_id)
        await asyncio.sleep(0.3)  # let any stray fan-out arrive
    assert events and bob_ws.of_job(prompt_id) == []
    assert {m["type"] for m in bob_ws.messages} <= {"status", "feature_flags"}
    assert (await client.get(f"/api/jobs/{prompt_id}", headers=as_bob)).status_code == 404
    assert (await client.get(f"/api/history/{prompt_id}", headers=as_bob)).json() == {}
    [item] = next(m for m in events if m["type"] == "executed")["data"]["output"]["images"]
    view = await client.get(
        "/api/view", params={"filename": item["filename"], "type": "output"}, headers=as_bob
    )
    assert view.status_code == 404
    assert (await client.get(f"/api/jobs/{prompt_id}", headers=as_alice)).status_code == 200


async def test_comfyui_restart_mid_job_ends_in_a_final_state(stack: Stack, client: httpx.AsyncClient) -> None:
    """The run is lost with ComfyUI; the job is given back, retried, and completes."""
    async with Socket(stack) as socket:
        prompt_id = await submit(client, slow(3.0, color=5), socket.client_id)
        await socket.until(prompt_id, "progress")
        async with httpx.AsyncClient() as sim:
            response = await sim.post(f"{stack.simulator_url}/_sim/restart", json={"down_seconds": 1.0})
            assert response.status_code == 200
        status = await final_status(client, prompt_id, timeout=120)
    assert status == "completed"
