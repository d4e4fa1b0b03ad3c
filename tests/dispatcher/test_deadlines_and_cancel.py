"""Execution and queue deadlines, and cancellation of pending and running jobs."""

from __future__ import annotations

import uuid

import pytest

from comfy_cloud.clients.dispatcher import DispatcherClient, JobNotFound
from database.job_states import JobStatus
from tests.database.helpers import make_catalogue, make_jobs, make_user
from tests.dispatcher.conftest import Env, eventually, job_rows, status_of


async def _status_is(env: Env, job: uuid.UUID, status: str) -> bool:
    return await status_of(env.db, job) == status


async def test_execution_deadline_interrupts_the_job_and_ends_it_timeout(env: Env) -> None:
    dispatcher = await env.dispatcher(execution_timeout=0.5)
    fake = await env.instance(dispatcher)  # heartbeats: the lease stays alive, only the deadline hits
    user = await make_user(env.db)
    [job] = await make_jobs(env.db, user, 1, fake.catalogue)
    await eventually(lambda: fake.handoffs, message="hand-off")
    await eventually(lambda: _status_is(env, job, "timeout"), message="timeout")
    await eventually(lambda: (job, "timeout") in fake.interrupts, message="interrupt on the instance")
    row = (await job_rows(env.db, [job]))[job]
    assert row.error["type"] == "execution_timeout"
    assert dispatcher.publisher.statuses(job)[-1] == "timeout"
    assert (await dispatcher.metrics())['cc_dispatcher_jobs_timed_out_total{kind="execution"}'] == 1
    await eventually(lambda: not fake.running, message="the instance dropped the job")


async def test_queue_deadline_expires_jobs_that_waited_too_long(env: Env) -> None:
    catalogue = await make_catalogue(env.db)  # no instance serves it: the job can only wait
    user = await make_user(env.db)
    [job] = await make_jobs(env.db, user, 1, catalogue)
    dispatcher = await env.dispatcher(queue_timeout=0.3)
    await eventually(lambda: _status_is(env, job, "timeout"), message="queue timeout")
    row = (await job_rows(env.db, [job]))[job]
    assert row.error["type"] == "queue_timeout"
    assert dispatcher.publisher.statuses(job) == ["timeout"]
    assert (await dispatcher.metrics())['cc_dispatcher_jobs_timed_out_total{kind="queue"}'] == 1


async def test_without_a_queue_timeout_a_waiting_job_is_never_expired(env: Env) -> None:
    catalogue = await make_catalogue(env.db)
    user = await make_user(env.db)
    [job] = await make_jobs(env.db, user, 1, catalogue)
    dispatcher = await env.dispatcher()
    reaped = await dispatcher.state.reaper.run_once()
    assert reaped.queue_timeouts == [] and await status_of(env.db, job) == "pending"


async def test_cancel_of_a_pending_job_is_immediate(env: Env) -> None:
    catalogue = await make_catalogue(env.db)
    user = await make_user(env.db)
    [job] = await make_jobs(env.db, user, 1, catalogue)
    dispatcher = await env.dispatcher()
    async with DispatcherClient(dispatcher.url) as client:
        assert await client.cancel(job) is True
        assert await status_of(env.db, job) == "cancelled"
        assert dispatcher.publisher.statuses(job) == ["cancelled"]
        assert await client.cancel(job) is False  # already ended


async def test_cancel_of_a_running_job_interrupts_it_on_its_instance(env: Env) -> None:
    dispatcher = await env.dispatcher()
    fake = await env.instance(dispatcher)
    user = await make_user(env.db)
    [job] = await make_jobs(env.db, user, 1, fake.catalogue)
    await eventually(lambda: fake.handoffs, message="hand-off")
    await fake.begin(job)
    answer = await dispatcher.http.post(f"/jobs/{job}/cancel")
    assert answer.json() == {"cancelled": True, "status": "cancelling"}
    assert (job, "cancel") in fake.interrupts
    # The instance interrupts ComfyUI and reports: the job ends cancelled.
    await eventually(lambda: _status_is(env, job, "cancelled"), message="cancelled")
    assert dispatcher.publisher.statuses(job) == ["assigned", "cancelling"]


async def test_an_instance_that_missed_the_interrupt_learns_it_from_its_heartbeat(env: Env) -> None:
    dispatcher = await env.dispatcher()
    fake = await env.instance(dispatcher, heartbeat_every=None, react_to_cancel=False)
    user = await make_user(env.db)
    [job] = await make_jobs(env.db, user, 1, fake.catalogue)
    await eventually(lambda: fake.handoffs, message="hand-off")
    async with DispatcherClient(dispatcher.url) as client:
        assert await client.cancel(job) is True
        assert await client.cancel(job) is True  # still being cancelled: asked again, harmless
    assert await fake.heartbeat() == {job: JobStatus.CANCELLING.value}
    await fake.report(job, JobStatus.CANCELLED)
    assert await status_of(env.db, job) == "cancelled"


async def test_a_cancelling_job_whose_instance_vanished_ends_cancelled(env: Env) -> None:
    dispatcher = await env.dispatcher(lease_seconds=1.0, heartbeat_interval=0.1, heartbeat_timeout=60)
    fake = await env.instance(dispatcher, heartbeat_every=0.05, react_to_cancel=False)
    user = await make_user(env.db)
    [job] = await make_jobs(env.db, user, 1, fake.catalogue)
    await eventually(lambda: fake.handoffs, message="hand-off")
    await dispatcher.http.post(f"/jobs/{job}/cancel")
    await fake.stop_heartbeats()  # the instance dies before it interrupts the job
    await eventually(lambda: _status_is(env, job, "cancelled"), message="cancelled by lease expiry")
    assert [h.attempt for h in fake.handoffs] == [1]  # not retried


async def test_cancel_of_an_unknown_job_is_404(env: Env) -> None:
    dispatcher = await env.dispatcher()
    answer = await dispatcher.http.post(f"/jobs/{uuid.uuid4()}/cancel")
    assert answer.status_code == 404 and answer.json()["code"] == "job_not_found"
    async with DispatcherClient(dispatcher.url) as client:
        with pytest.raises(JobNotFound):
            await client.cancel(uuid.uuid4())
