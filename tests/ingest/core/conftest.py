"""Fixtures for ingest's core routes (prompts, queue, jobs, history, ws).

The app is `create_app()` itself over real components: PostgreSQL (a fresh database per test), the
in-process broadcaster, local object storage, and authentication by real API keys. The dispatcher is
the one stand-in: `FakeDispatcher` answers cancels the way the dispatcher's HTTP API does
(the cancel performs the same job_states transition), and records the calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from comfy_cloud.broadcast import Broadcaster, InProcessBroadcaster
from comfy_cloud.clients.errors import Unreachable
from comfy_cloud.storage import LocalStorage
from database.engine import Database
from database.job_states import ACTIVE_STATUSES, InvalidJobTransition, JobStatus, transition
from database.repositories.fleet import FleetRepository, Registration
from database.repositories.jobs import JobRepository, NewJob
from database.repositories.results import ResultRepository
from database.repositories.users import UserRepository
from services.ingest.app import create_app
from services.ingest.config import IngestSettings
from services.ingest.state import IngestState

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "comfyui"
SECRET = "test-secret-key-" + "x" * 32
SMALL_CLASSES = (
    "EmptyImage", "ImageInvert", "SaveImage", "LoadImage", "LoadImageOutput", "PreviewImage",
    "EmptyLatentImage", "GetImageSize", "PreviewAny", "ProbePreview", "ImageBlur",
)  # fmt: skip

PROMPT: dict[str, Any] = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


def load_fixture(relative: str) -> Any:
    return json.loads((FIXTURES / relative).read_text())


@pytest.fixture(scope="session")
def object_info_full() -> dict[str, Any]:
    return load_fixture("object_info-0.33.0.json")


@pytest.fixture(scope="session")
def object_info_small(object_info_full: dict[str, Any]) -> dict[str, Any]:
    return {name: object_info_full[name] for name in SMALL_CLASSES}


class FakeDispatcher:
    """The dispatcher's API as ingest sees it: POST /jobs/{id}/cancel."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.cancels: list[uuid.UUID] = []
        self.fail = False

    async def cancel(self, job_id: uuid.UUID) -> bool:
        if self.fail:
            raise Unreachable("dispatcher at http://127.0.0.1:1 is unreachable")
        self.cancels.append(job_id)
        async with self.db.session() as session:
            try:
                await transition(session, job_id, JobStatus.CANCELLING, expected=ACTIVE_STATUSES)
            except InvalidJobTransition as exc:
                return exc.current is JobStatus.CANCELLING
        return True

    async def aclose(self) -> None:
        pass


@dataclass
class Caller:
    id: uuid.UUID
    name: str
    key: str
    client: httpx.AsyncClient


@dataclass
class Env:
    app: FastAPI
    db: Database
    settings: IngestSettings
    broadcaster: Broadcaster
    dispatcher: FakeDispatcher
    catalogue: str
    callers: list[Caller] = field(default_factory=list)

    @property
    def state(self) -> IngestState:
        return self.app.state.ingest

    def client(self, **headers: str) -> httpx.AsyncClient:
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, raise_app_exceptions=False),
            base_url="http://127.0.0.1:8080",
            headers=headers,
        )
        self._clients.append(client)
        return client

    async def caller(self, name: str | None = None) -> Caller:
        name = name or f"user-{uuid.uuid4().hex[:8]}"
        async with self.db.session() as session:
            users = UserRepository(session)
            user = await users.get_or_create(name)
            key = (await users.create_api_key(user.id)).key
        caller = Caller(user.id, name, key, self.client(**{"X-API-Key": key}))
        self.callers.append(caller)
        return caller

    def __post_init__(self) -> None:
        self._clients: list[httpx.AsyncClient] = []

    async def close(self) -> None:
        for client in self._clients:
            await client.aclose()


MakeEnv = Callable[..., Any]


async def register_catalogue(db: Database, object_info: dict[str, Any], *, status: str = "live") -> str:
    async with db.session() as session:
        fleet = FleetRepository(session)
        digest = await fleet.put_catalogue(object_info)
        instance_id = uuid.uuid4()
        await fleet.register(
            Registration(
                id=instance_id, address=f"http://127.0.0.1:1/{instance_id}", capacity=2, catalogue_hash=digest
            )
        )
        if status != "live":
            await fleet.set_status(instance_id, status)
    return digest


@pytest.fixture
def make_env(db: Database, database_url: str, tmp_path: Path, object_info_small: dict[str, Any]) -> MakeEnv:
    @contextlib.asynccontextmanager
    async def make(
        catalogue: dict[str, Any] | None = None, broadcaster: Broadcaster | None = None, **overrides: Any
    ) -> AsyncIterator[Env]:
        values: dict[str, Any] = {
            "database_url": database_url,
            "secret_key": SECRET,
            "ingest_dev_mode": False,
            "api_key_cache_ttl": 30.0,
            "broadcast_url": "memory",
            "storage_url": f"file://{tmp_path / 'objects'}",
        }
        values.update(overrides)
        settings = IngestSettings(**values)
        broadcaster = broadcaster or InProcessBroadcaster()
        dispatcher = FakeDispatcher(db)
        app = create_app(
            settings,
            broadcaster=broadcaster,
            dispatcher=dispatcher,
            storage=LocalStorage(tmp_path / "objects"),
        )
        digest = await register_catalogue(db, catalogue if catalogue is not None else object_info_small)
        async with app.router.lifespan_context(app):
            env = Env(app, db, settings, broadcaster, dispatcher, digest)
            try:
                yield env
            finally:
                await env.close()

    return make


@pytest.fixture
async def env(make_env: MakeEnv) -> AsyncIterator[Env]:
    async with make_env() as env:
        yield env


@pytest.fixture
async def alice(env: Env) -> Caller:
    return await env.caller("alice")


@pytest.fixture
async def bob(env: Env) -> Caller:
    return await env.caller("bob")


# --- jobs in every state --------------------------------------------------------------------------

_PATHS: dict[JobStatus, list[JobStatus]] = {
    JobStatus.PENDING: [],
    JobStatus.ASSIGNED: [JobStatus.ASSIGNED],
    JobStatus.IN_PROGRESS: [JobStatus.ASSIGNED, JobStatus.IN_PROGRESS],
    JobStatus.CANCELLING: [JobStatus.ASSIGNED, JobStatus.IN_PROGRESS, JobStatus.CANCELLING],
    JobStatus.COMPLETED: [JobStatus.ASSIGNED, JobStatus.IN_PROGRESS, JobStatus.COMPLETED],
    JobStatus.ERROR: [JobStatus.ASSIGNED, JobStatus.IN_PROGRESS, JobStatus.ERROR],
    JobStatus.TIMEOUT: [JobStatus.TIMEOUT],
    JobStatus.CANCELLED: [JobStatus.CANCELLED],
}


async def add_job(
    db: Database,
    user_id: uuid.UUID,
    status: JobStatus = JobStatus.PENDING,
    *,
    job_id: uuid.UUID | str | None = None,
    prompt: dict[str, Any] | None = None,
    extra_data: dict[str, Any] | None = None,
    number: float | None = None,
    outputs_to_execute: list[str] | None = None,
    history: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    interrupted_while_running: bool = False,
) -> uuid.UUID:
    """A job of `user_id` moved along legal transitions to `status`; `history` = a ComfyUI history entry
    ({outputs, status, meta}) stored as the worker would."""
    new_id = uuid.UUID(str(job_id)) if job_id is not None else uuid.uuid4()
    path = _PATHS[status]
    if status is JobStatus.CANCELLED and interrupted_while_running:
        path = [JobStatus.ASSIGNED, JobStatus.IN_PROGRESS, JobStatus.CANCELLED]
    async with db.session() as session:
        await JobRepository(session).create(
            NewJob(
                id=new_id,
                user_id=user_id,
                prompt=prompt if prompt is not None else PROMPT,
                extra_data=extra_data if extra_data is not None else {"create_time": 1795860230231},
                outputs_to_execute=outputs_to_execute if outputs_to_execute is not None else ["2"],
                required_nodes=["EmptyImage", "SaveImage"],
                number=number,
                workflow_id=_workflow_id(extra_data),
            )
        )
        for step in path:
            await transition(session, new_id, step, error=error if step is path[-1] else None)
        if history is not None:
            await ResultRepository(session).save_history(
                job_id=new_id,
                user_id=user_id,
                outputs=history.get("outputs", {}),
                status=history.get("status", {}),
                meta=history.get("meta", {}),
            )
    return new_id


def _workflow_id(extra_data: dict[str, Any] | None) -> str | None:
    try:
        value = extra_data["extra_pnginfo"]["workflow"]["id"]  # type: ignore[index]
    except (TypeError, KeyError):
        return None
    return value if isinstance(value, str) else None


async def add_file(
    db: Database, user_id: uuid.UUID, filename: str, *, type_: str = "input", subfolder: str = ""
) -> None:
    async with db.session() as session:
        from database.repositories.results import FileSpec

        await ResultRepository(session).put_file(
            FileSpec(
                user_id=user_id,
                type=type_,
                subfolder=subfolder,
                filename=filename,
                content_hash="0" * 64,
                size=1,
                content_type="image/png",
                storage_key="objects/00/" + "0" * 64,
            )
        )


async def eventually(condition: Callable[[], bool | Awaitable[bool]], within: float = 5.0) -> None:
    """Wait until `condition()` holds (polling the event loop, no fixed sleep)."""
    async with asyncio.timeout(within):
        while True:
            result = condition()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.005)


# --- a real server for WebSocket tests ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[int]:
    """Run `app` on uvicorn at 127.0.0.1 on a free port (its lifespan is already running: "off")."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, lifespan="off", log_level="warning", ws_ping_interval=None
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started or task.done(), within=10)
        if task.done():
            task.result()
        port = server.servers[0].sockets[0].getsockname()[1]
        yield port
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
