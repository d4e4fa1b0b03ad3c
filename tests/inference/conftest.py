"""An inference instance beside a real simulator, on a fresh database, with local storage and the
in-process broadcaster; jobs are created and claimed for it with the real repositories."""

from __future__ import annotations

import asyncio
import io
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from comfy_cloud.broadcast import InProcessBroadcaster, JobEvent
from comfy_cloud.clients.dispatcher import DispatcherClient
from comfy_cloud.secrets import Sealer
from comfy_cloud.simulator import SimulatorConfig, SimulatorServer
from comfy_cloud.storage import LocalStorage
from database.engine import Database
from database.job_states import TERMINAL_STATUSES, JobStatus
from database.models import Job
from database.repositories.fleet import FleetRepository, Registration
from database.repositories.jobs import JobRepository, NewJob
from database.repositories.queue import claim_jobs
from database.repositories.results import FileSpec, ResultRepository
from database.repositories.users import UserRepository
from services.inference.config import InferenceSettings
from services.inference.instance import Instance

SECRET_KEY = "k" * 40
FAST = {
    "ws_ping_interval": 0.5,
    "ws_ping_timeout": 0.5,
    "silence_timeout": 5.0,
    "poll_interval": 0.2,
    "comfyui_lost_timeout": 10.0,
    "interrupt_grace": 10.0,
    "close_wait": 2.0,
    "upload_backoff": 0.05,
    "heartbeat_interval": 0.2,
    "http_timeout": 10.0,
}


def png(width: int = 8, height: int = 8, color: tuple[int, int, int] = (10, 200, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


def basic_prompt(prefix: str = "test", color: int = 0) -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": color},
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def sleep_prompt(seconds: float) -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ProbeSleep", "inputs": {"image": ["1", 0], "seconds": seconds}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "slept"}},
    }


async def wait_for(
    predicate: Callable[[], Awaitable[Any] | Any], within: float = 20.0, what: str = ""
) -> Any:
    """Poll until predicate() is truthy; fail the test after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await asyncio.sleep(0.02)


async def insert_job(
    db: Database, job_id: uuid.UUID, user_id: uuid.UUID, prompt: dict[str, Any], catalogue: str, **fields: Any
) -> None:
    """A pending job as ingest inserts it, runnable on `catalogue`."""
    required = sorted({node["class_type"] for node in prompt.values()})
    async with db.session() as session:
        await JobRepository(session).create(
            NewJob(
                id=job_id,
                user_id=user_id,
                prompt=prompt,
                required_nodes=required,
                runnable_on=[catalogue],
                **fields,
            )
        )


@dataclass
class Harness:
    db: Database
    sim: SimulatorServer | None
    comfy_url: str
    instance: Instance
    storage: LocalStorage
    broadcaster: InProcessBroadcaster
    user_id: uuid.UUID
    catalogue: str
    events: list[JobEvent] = field(default_factory=list)

    @property
    def instance_id(self) -> uuid.UUID:
        return self.instance.settings.instance_id

    async def sim_post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.comfy_url, timeout=10) as client:
            return await client.post(path, json=body or {})

    async def create_job(
        self,
        prompt: dict[str, Any],
        *,
        secrets: dict[str, str] | None = None,
        job_id: uuid.UUID | None = None,
        **fields: Any,
    ) -> uuid.UUID:
        """A pending job of the harness user, claimed for this instance (status assigned)."""
        job_id = job_id or uuid.uuid4()
        sealed = Sealer(SECRET_KEY).seal(job_id, secrets or {})
        extra_data = {"extra_pnginfo": {"workflow": {"id": "wf-1"}}}
        await insert_job(
            self.db,
            job_id,
            self.user_id,
            prompt,
            self.catalogue,
            sealed_secrets=sealed,
            extra_data=extra_data,
            **fields,
        )
        await self.claim(job_id)
        return job_id

    async def claim(
        self, job_id: uuid.UUID, lease_seconds: float = 60, execution_timeout: float = 600
    ) -> int:
        async with self.db.raw() as conn, conn.transaction():
            claimed = await claim_jobs(
                conn,
                catalogue=self.catalogue,
                slots=[self.instance_id],
                default_user_limit=100,
                lease_seconds=lease_seconds,
                execution_timeout=execution_timeout,
            )
        assert [c.id for c in claimed] == [job_id]
        return claimed[0].attempts

    async def run(self, prompt: dict[str, Any], **kw: Any) -> uuid.UUID:
        job_id = await self.create_job(prompt, **kw)
        job = await self.job(job_id)
        await self.instance.worker.accept(job_id, job.attempts)
        return job_id

    async def job(self, job_id: uuid.UUID) -> Job:
        async with self.db.session() as session:
            job = await JobRepository(session).get_unscoped(job_id)
        assert job is not None
        return job

    async def wait_status(self, job_id: uuid.UUID, *statuses: JobStatus, within: float = 20.0) -> Job:
        wanted = {s.value for s in (statuses or TERMINAL_STATUSES)}

        async def reached() -> Job | None:
            job = await self.job(job_id)
            return job if job.status in wanted else None

        return await wait_for(reached, within, f"job {job_id} to be {sorted(wanted)}")

    async def wait_idle(self, within: float = 20.0) -> None:
        await wait_for(lambda: not self.instance.worker.runners, within, "the worker to be idle")

    def events_of(self, job_id: uuid.UUID) -> list[JobEvent]:
        return [e for e in self.events if e.job_id == str(job_id)]

    def types_of(self, job_id: uuid.UUID) -> list[str]:
        return [e.type for e in self.events_of(job_id)]

    async def wait_event(self, job_id: uuid.UUID, type_: str, within: float = 20.0) -> JobEvent:
        def found() -> JobEvent | None:
            return next((e for e in self.events_of(job_id) if e.type == type_), None)

        return await wait_for(found, within, f"a {type_} event of job {job_id}")

    async def upload(self, name: str, data: bytes, *, type_: str = "input", subfolder: str = "") -> uuid.UUID:
        """A file of the harness user, as ingest's upload would record it."""
        obj = await self.storage.put_bytes(data, content_type="image/png")
        async with self.db.session() as session:
            file = await ResultRepository(session).put_file(
                FileSpec(
                    user_id=self.user_id,
                    type=type_,
                    subfolder=subfolder,
                    filename=name,
                    content_hash=obj.sha256,
                    size=obj.size,
                    content_type=obj.content_type,
                    storage_key=obj.key,
                )
            )
        return file.id


MakeHarness = Callable[..., Awaitable[Harness]]


# A "ComfyUI directory" whose main.py takes ComfyUI's flags and serves the simulator in its own process.
MAIN_PY = """
import argparse
import json
import sys
from pathlib import Path

from comfy_cloud.simulator.__main__ import main

parser = argparse.ArgumentParser()
parser.add_argument("--listen")
parser.add_argument("--port")
args, rest = parser.parse_known_args()
Path("argv.json").write_text(json.dumps(sys.argv[1:]))
main(["--host", args.listen, "--port", args.port, "--base-dir", "data"])
"""


@pytest.fixture
def comfyui_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "ComfyUI"
    directory.mkdir()
    (directory / "main.py").write_text(MAIN_PY)
    return directory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def make_harness(db: Database, database_url: str, tmp_path: Path) -> AsyncIterator[MakeHarness]:
    """make_harness(version="0.33.0", dispatcher=None, comfyui_dir=None, storage=None, **settings) -> a
    started Harness. With `comfyui_dir` the instance supervises the ComfyUI there instead of a simulator."""
    started: list[tuple[Harness, asyncio.Task[None]]] = []
    servers: list[SimulatorServer] = []

    async def make(
        version: str = "0.33.0",
        dispatcher: DispatcherClient | None = None,
        comfyui_dir: Path | None = None,
        storage: LocalStorage | None = None,
        **overrides: Any,
    ) -> Harness:
        sim = None
        if comfyui_dir is None:
            sim = SimulatorServer(SimulatorConfig(version=version, base_dir=tmp_path / f"sim{len(servers)}"))
            await sim.start()
            servers.append(sim)
        comfy_url = sim.url if sim else f"http://127.0.0.1:{free_port()}"
        settings = InferenceSettings(
            database_url=database_url,
            comfyui_url=comfy_url,
            comfyui_dir=comfyui_dir,
            dispatcher_url=None,
            secret_key=SECRET_KEY,
            **{**FAST, **overrides},
        )
        broadcaster = InProcessBroadcaster()
        await broadcaster.start()
        storage = storage or LocalStorage(tmp_path / "storage")
        instance = Instance(settings, storage=storage, broadcaster=broadcaster, dispatcher=dispatcher)
        subscription = broadcaster.subscribe()
        events: list[JobEvent] = []

        async def collect() -> None:
            async for event in subscription:
                events.append(event)

        collector = asyncio.get_running_loop().create_task(collect())
        await instance.start()
        await wait_for(instance.follower.connected.is_set, 30, "the socket to connect")
        user_id, catalogue = await _register(db, instance)
        harness = Harness(db, sim, comfy_url, instance, storage, broadcaster, user_id, catalogue, events)
        started.append((harness, collector))
        return harness

    yield make
    for harness, collector in started:
        await harness.instance.stop()
        await harness.broadcaster.close()
        collector.cancel()
    for server in servers:
        await server.stop()


async def _register(db: Database, instance: Instance) -> tuple[uuid.UUID, str]:
    """A user, and the instance's catalogue and registration, as the dispatcher would store them."""
    object_info = await instance.catalogue.object_info()
    async with db.session() as session:
        user = await UserRepository(session).get_or_create(f"user-{uuid.uuid4().hex[:8]}")
        fleet = FleetRepository(session)
        catalogue = await fleet.put_catalogue(object_info)
        await fleet.register(
            Registration(
                instance.settings.instance_id, "http://127.0.0.1:1", capacity=4, catalogue_hash=catalogue
            )
        )
    return user.id, catalogue


@pytest.fixture
async def harness(make_harness: MakeHarness) -> Harness:
    return await make_harness()
