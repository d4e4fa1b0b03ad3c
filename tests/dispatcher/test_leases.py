"""Leases, lost instances and retries: a job whose worker vanishes is re-queued, and ends in error once
its attempts are spent; a late report from the old worker is refused."""

from __future__ import annotations

import uuid
from datetime import datetime

import pytest
from sqlalchemy import text

from comfy_cloud.clients.dispatcher import InstanceNotRegistered
from database.job_states import InvalidJobTransition, JobStatus, transition
from tests.database.helpers import make_catalogue, make_jobs, make_user
from tests.dispatcher.conftest import Env, eventually, job_rows, status_of


async def test_heartbeats_renew_the_lease_of_running_jobs(env: Env) -> None:
    dispatcher = await env.dispatcher(lease_seconds=60)
    fake = await env.instance(dispatcher, heartbeat_every=None)
    user = await make_user(env.db)
    [job] = await make_jobs(env.db, user, 1, fake.catalogue)
    await eventually(lambda: fake.handoffs, message="hand-off")
    before = await _lease(env, job)
    assert await fake.heartbeat() == {job: "assigned"}
    after = await _lease(env, job)
    assert after > before, "the heartbeat did not extend the lease"
    row = (await job_rows(env.db, [job]))[job]
    assert (row.status, row.attempts, row.instance_id) == ("assigned", 1, fake.id)
    await fake.begin(job)  # running on ComfyUI now: still renewed
    assert await fake.heartbeat() == {job: "in_progress"}
    assert await _lease(env, job) > after


async def _lease(env: Env, job: uuid.UUID) -> datetime:
    async with env.db.session() as session:
        return await session.scalar(text("SELECT lease_expires_at FROM jobs WHERE id = :id"), {"id": job})


async def test_expired_lease_requeues_and_the_attempt_limit_ends_in_error(env: Env) -> None:
    dispatcher = await env.dispatcher(lease_seconds=0.3, heartbeat_interval=0.1, heartbeat_timeout=60)
    # A worker that takes jobs and then goes silent (it never heartbeats, but is not yet lost).
    fake = await env.instance(dispatcher, heartbeat_every=None, capacity=5)
    user = await make_user(env.db)
    [job] = await make_jobs(env.db, user, 1, fake.catalogue, max_attempts=2)
    await eventually(lambda: _error(env, job), message="error after two attempts")
    attempts = [h.attempt for h in fake.handoffs if h.job_id == job]
    assert attempts == [1, 2]
    row = (await job_rows(env.db, [job]))[job]
    assert row.error["type"] == "lease_expired" and "2 times" in row.error["message"]
    assert dispatcher.publisher.statuses(job) == ["assigned", "pending", "assigned", "error"]
    metrics = await dispatcher.metrics()
    assert metrics["cc_dispatcher_jobs_retried_total"] == 1
    assert metrics["cc_dispatcher_jobs_attempts_exhausted_total"] == 1


async def _error(env: Env, job: uuid.UUID) -> bool:
    return await status_of(env.db, job) == "error"


async def test_max_attempts_setting_caps_the_jobs_own_limit(env: Env) -> None:
    dispatcher = await env.dispatcher(
        lease_seconds=0.3, heartbeat_interval=0.1, heartbeat_timeout=60, max_attempts=1
    )
    fake = await env.instance(dispatcher, heartbeat_every=None, capacity=5)
    user = await make_user(env.db)
    [job] = await make_jobs(env.db, user, 1, fake.catalogue, max_attempts=5)
    await eventually(lambda: _error(env, job), message="error after one attempt")
    assert [h.attempt for h in fake.handoffs] == [1]


async def test_a_lost_instance_loses_its_jobs_and_its_late_report_is_refused(env: Env) -> None:
    dispatcher = await env.dispatcher(lease_seconds=30, heartbeat_timeout=0.5, heartbeat_interval=0.1)
    old = await env.instance(dispatcher, heartbeat_every=0.05)
    user = await make_user(env.db)
    [job] = await make_jobs(env.db, user, 1, old.catalogue)
    await eventually(lambda: old.handoffs, message="hand-off to the old instance")
    await old.stop_heartbeats()  # and then it goes silent
    new = await env.instance(dispatcher)  # heartbeats; free
    # The old one misses its heartbeats: lost, and its job re-queued at once (not after 30 s of lease).
    await eventually(lambda: new.handoffs, message="hand-off to the new instance")
    assert new.handoffs[0].job_id == job and new.handoffs[0].attempt == 2
    listed = {i["id"]: i for i in (await dispatcher.http.get("/instances")).json()["instances"]}
    assert listed[str(old.id)]["state"] == "lost" and listed[str(new.id)]["state"] == "live"
    assert listed[str(new.id)]["running"] == 1
    assert (await dispatcher.metrics())["cc_dispatcher_instances_lost_total"] == 1

    # The old instance comes back: its heartbeat is refused until it registers again...
    with pytest.raises(InstanceNotRegistered):
        await old.heartbeat()
    await old.register()
    # ...and then the job is no longer its own: not renewed, and its report is refused.
    assert await old.heartbeat() == {}
    assert job not in old.running
    async with env.db.session() as session:
        with pytest.raises(InvalidJobTransition):
            await transition(session, job, JobStatus.COMPLETED, instance_id=old.id)
    row = (await job_rows(env.db, [job]))[job]
    assert (row.status, row.instance_id) == ("assigned", new.id)


async def test_an_unknown_instance_must_register(env: Env) -> None:
    dispatcher = await env.dispatcher()
    answer = await dispatcher.http.post(f"/instances/{uuid.uuid4()}/heartbeat", json={"running": []})
    assert answer.status_code == 404
    assert answer.json()["code"] == "instance_not_registered"


async def test_registering_with_an_unknown_catalogue_asks_for_it_first(env: Env) -> None:
    dispatcher = await env.dispatcher()
    body = {"id": str(uuid.uuid4()), "address": "http://127.0.0.1:9", "capacity": 1, "catalogue_hash": "f00"}
    answer = await dispatcher.http.post("/instances/register", json=body)
    assert answer.status_code == 409
    assert answer.json()["error"] == "unknown catalogue"
    wrong = await dispatcher.http.put("/catalogues/f00", json={"A": {}})
    assert wrong.status_code == 400 and wrong.json()["code"] == "catalogue_hash_mismatch"


async def test_reregistration_with_the_same_catalogue_keeps_other_jobs_routable(env: Env) -> None:
    """A catalogue stored before any instance served it: its first instance makes pending jobs that
    need it routable (ingest could not name it in runnable_on while no instance had it)."""
    catalogue = await make_catalogue(env.db)
    user = await make_user(env.db)
    [job] = await make_jobs(env.db, user, 1, catalogue)
    async with env.db.session() as session:  # as if submitted while nobody served the catalogue
        await session.execute(text("UPDATE jobs SET runnable_on = '{}' WHERE id = :id"), {"id": job})
    dispatcher = await env.dispatcher()
    fake = await env.instance(dispatcher)
    await eventually(lambda: fake.handoffs, message="hand-off")
    assert fake.handoffs[0].job_id == job
