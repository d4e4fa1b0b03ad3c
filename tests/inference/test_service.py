"""The inference service over HTTP beside the real dispatcher: registration with the catalogue,
hand-offs, heartbeats that renew leases and carry cancels, re-registration and health."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from comfy_cloud.broadcast import InProcessBroadcaster
from comfy_cloud.simulator import SimulatorConfig, SimulatorServer
from comfy_cloud.storage import LocalStorage
from database.engine import Database
from database.job_states import JobStatus
from database.models import InferenceInstance, NodeCatalogue
from database.repositories.fleet import FleetRepository, catalogue_hash
from database.repositories.jobs import JobRepository
from database.repositories.users import UserRepository
from services.dispatcher.app import create_app as create_dispatcher
from services.dispatcher.config import DispatcherSettings
from services.inference.app import create_app
from services.inference.config import InferenceSettings
from services.inference.instance import Instance
from tests.dispatcher.fake_instance import serve
from tests.inference.conftest import FAST, SECRET_KEY, basic_prompt, insert_job, sleep_prompt, wait_for


@dataclass
class Service:
    db: Database
    sim: SimulatorServer
    url: str
    dispatcher_url: str
    http: httpx.AsyncClient
    instance: Instance
    user_id: uuid.UUID

    async def submit(self, prompt: dict[str, Any], **fields: Any) -> uuid.UUID:
        """A pending job, as ingest creates it, then a nudge: the dispatcher does the rest."""
        digest = self.instance.catalogue.hash
        assert digest is not None
        job_id = uuid.uuid4()
        await insert_job(self.db, job_id, self.user_id, prompt, digest, **fields)
        async with httpx.AsyncClient(base_url=self.dispatcher_url) as client:
            await client.post("/dispatch")
        return job_id

    async def job(self, job_id: uuid.UUID) -> Any:
        async with self.db.session() as session:
            return await JobRepository(session).get_unscoped(job_id)

    async def wait_status(self, job_id: uuid.UUID, *statuses: JobStatus, within: float = 20) -> Any:
        wanted = {s.value for s in statuses}

        async def reached() -> Any:
            job = await self.job(job_id)
            return job if job.status in wanted else None

        return await wait_for(reached, within, f"job {job_id} to be {sorted(wanted)}")

    async def instance_row(self) -> InferenceInstance | None:
        async with self.db.session() as session:
            return await session.get(InferenceInstance, self.instance.settings.instance_id)


# Short, so that a job outlives its lease within seconds; yet 15 heartbeats long, so that a machine
# busy with other work (a heartbeat or a hand-off delayed by a second or more) does not expire it.
LEASE_SECONDS = 3.0


@pytest.fixture
async def service(db: Database, database_url: str, tmp_path: Path) -> AsyncIterator[Service]:
    async with contextlib.AsyncExitStack() as stack:
        sim = SimulatorServer(SimulatorConfig(base_dir=tmp_path / "sim"))
        await sim.start()
        stack.push_async_callback(sim.stop)
        broadcaster = InProcessBroadcaster()
        await broadcaster.start()
        stack.push_async_callback(broadcaster.close)
        dispatcher_settings = DispatcherSettings(
            database_url=database_url,
            poll_interval=0.1,
            reap_interval=0.1,
            lease_seconds=LEASE_SECONDS,
            heartbeat_interval=0.2,
            heartbeat_timeout=5.0,
            default_user_limit=10,
        )
        dispatcher_url = await stack.enter_async_context(
            serve(create_dispatcher(dispatcher_settings, publisher=broadcaster), lifespan="on")
        )
        settings = InferenceSettings(
            database_url=database_url,
            comfyui_url=sim.url,
            dispatcher_url=dispatcher_url,
            secret_key=SECRET_KEY,
            **FAST,
        )
        app = create_app(settings, storage=LocalStorage(tmp_path / "storage"), broadcaster=broadcaster)
        # Serve first (the port is only known then), then start the instance so it registers that URL.
        url = await stack.enter_async_context(serve(app))
        settings.advertise_url = url
        await stack.enter_async_context(app.router.lifespan_context(app))
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, timeout=10))
        async with db.session() as session:
            user = await UserRepository(session).get_or_create("alice")
        service = Service(db, sim, url, dispatcher_url, http, app.state.instance, user.id)
        await wait_for(
            lambda: service.instance.fleet and service.instance.fleet.registered, 10, "registration"
        )
        yield service


async def test_registers_with_its_full_catalogue(service: Service) -> None:
    async with httpx.AsyncClient(base_url=service.sim.url) as client:
        object_info = (await client.get("/api/object_info")).json()
    row = await service.instance_row()
    assert row is not None and row.status == "live" and row.healthy
    assert row.address == service.url and row.capacity == 1
    assert row.catalogue_hash == catalogue_hash(object_info)
    assert row.comfyui_version == "0.33.0"
    assert row.features and row.features["supports_preview_metadata"] is True
    async with service.db.session() as session:
        stored = await session.get(NodeCatalogue, row.catalogue_hash)
    assert stored is not None and stored.object_info == object_info  # ingest serves node defs from it


async def test_dispatched_job_runs_and_leases_are_renewed(service: Service) -> None:
    # A job twice as long as a lease: only heartbeats keep it from being re-queued.
    job_id = await service.submit(sleep_prompt(2 * LEASE_SECONDS))
    job = await service.wait_status(job_id, JobStatus.IN_PROGRESS)
    first_lease = job.lease_expires_at
    await wait_for(
        lambda: _lease_after(service, job_id, first_lease), 5, "the lease to be renewed by a heartbeat"
    )
    job = await service.wait_status(job_id, JobStatus.COMPLETED, within=30)
    assert job.finished_at > first_lease  # it outlived the lease it started with
    assert job.attempts == 1  # never lost, never re-run


async def test_cancel_through_the_dispatcher(service: Service) -> None:
    job_id = await service.submit(sleep_prompt(30))
    await service.wait_status(job_id, JobStatus.IN_PROGRESS)
    async with httpx.AsyncClient(base_url=service.dispatcher_url) as client:
        assert (await client.post(f"/jobs/{job_id}/cancel")).json()["cancelled"] is True
    await service.wait_status(job_id, JobStatus.CANCELLED, within=15)


async def test_heartbeat_cancelling_status_interrupts(service: Service) -> None:
    job_id = await service.submit(sleep_prompt(30))
    await service.wait_status(job_id, JobStatus.IN_PROGRESS)
    # A cancel whose interrupt call was lost: the next heartbeat answer says `cancelling`.
    async with service.db.session() as session:
        await session.execute(text("UPDATE jobs SET status = 'cancelling' WHERE id = :id"), {"id": job_id})
    await service.wait_status(job_id, JobStatus.CANCELLED, within=15)


async def test_job_missing_from_heartbeat_answer_is_dropped(service: Service) -> None:
    job_id = await service.submit(sleep_prompt(30), max_attempts=1)
    await service.wait_status(job_id, JobStatus.IN_PROGRESS)
    async with service.db.session() as session:  # e.g. the lease expired and the job failed meanwhile
        await session.execute(
            text("UPDATE jobs SET status = 'error', finished_at = now() WHERE id = :id"), {"id": job_id}
        )
    await wait_for(lambda: not service.instance.worker.runners, 10, "the job to be dropped")
    async with httpx.AsyncClient(base_url=service.sim.url) as client:

        async def stopped() -> bool:
            return (await client.get("/_sim/stats")).json()["running"] is None

        await wait_for(stopped, 10, "ComfyUI to stop the prompt")
    assert (await service.job(job_id)).status == JobStatus.ERROR


async def test_lost_instance_registers_again(service: Service) -> None:
    async with service.db.session() as session:
        await FleetRepository(session).set_status(service.instance.settings.instance_id, "lost")

    async def live_again() -> bool:
        row = await service.instance_row()
        return row is not None and row.status == "live"

    await wait_for(live_again, 10, "re-registration")


async def test_unhealthy_and_not_ready_while_comfyui_is_down(service: Service) -> None:
    assert (await service.http.get("/ready")).status_code == 200
    await service.sim.stop()

    async def unhealthy() -> bool:
        row = await service.instance_row()
        return row is not None and not row.healthy

    await wait_for(unhealthy, 10, "an unhealthy heartbeat")
    ready = await service.http.get("/ready")
    assert ready.status_code == 503 and ready.json()["checks"]["comfyui"] is False
    await service.sim.start()  # same port
    await wait_for(lambda: _ready(service), 15, "readiness after ComfyUI returns")


async def test_hand_off_api(service: Service) -> None:
    unknown = uuid.uuid4()
    answer = await service.http.post("/jobs", json={"job_id": str(unknown), "attempt": 1})
    assert answer.status_code == 409 and answer.json()["code"] == "not_assigned"
    answer = await service.http.post(f"/jobs/{unknown}/interrupt", json={"reason": "cancel"})
    assert answer.status_code == 404 and answer.json()["code"] == "not_found"
    # Full: capacity 1, one job running; a second hand-off is refused with 409.
    job_id = await service.submit(sleep_prompt(30))
    await service.wait_status(job_id, JobStatus.IN_PROGRESS)
    status = (await service.http.get("/status")).json()
    assert status["running"][0]["job_id"] == str(job_id) and status["registered"] is True
    assert status["comfyui"]["connected"] is True
    answer = await service.http.post("/jobs", json={"job_id": str(uuid.uuid4()), "attempt": 1})
    assert answer.status_code == 409 and answer.json()["code"] == "full"
    answer = await service.http.post(f"/jobs/{job_id}/interrupt", json={"reason": "cancel"})
    assert answer.status_code == 202 and answer.json() == {"interrupting": True}
    await service.wait_status(job_id, JobStatus.CANCELLED, JobStatus.ERROR, within=15)


async def test_next_job_starts_when_one_ends(service: Service) -> None:
    first = await service.submit(basic_prompt("first"))
    second = await service.submit(basic_prompt("second"))
    await service.wait_status(first, JobStatus.COMPLETED)
    await service.wait_status(second, JobStatus.COMPLETED)


async def _lease_after(service: Service, job_id: uuid.UUID, before: Any) -> bool:
    job = await service.job(job_id)
    return job.lease_expires_at is not None and before is not None and job.lease_expires_at > before


async def _ready(service: Service) -> bool:
    return (await service.http.get("/ready")).status_code == 200
