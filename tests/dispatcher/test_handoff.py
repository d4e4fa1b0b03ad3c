"""Hand-offs that fail: a job the instance never got goes back to pending without spending an attempt,
and the instance gets no more work until its next healthy heartbeat."""

from __future__ import annotations

import socket
import uuid

from comfy_cloud.clients.dispatcher import InstanceRegistration
from tests.database.helpers import make_jobs, make_user
from tests.dispatcher.conftest import Env, RunningDispatcher, eventually, job_rows


async def test_a_refused_hand_off_requeues_without_spending_an_attempt(env: Env) -> None:
    dispatcher = await env.dispatcher()
    broken = await env.instance(dispatcher, heartbeat_every=None)
    broken.answer = 500
    user = await make_user(env.db)
    [job] = await make_jobs(env.db, user, 1, broken.catalogue)
    await eventually(lambda: _unhealthy(dispatcher, broken.id), message="instance marked unhealthy")
    row = (await job_rows(env.db, [job]))[job]
    assert (row.status, row.attempts, row.instance_id) == ("pending", 0, None)
    assert dispatcher.publisher.statuses(job) == ["assigned", "pending"]
    metrics = await dispatcher.metrics()
    assert metrics['cc_dispatcher_handoff_failures_total{reason="rejected"}'] == 1
    assert metrics['cc_dispatcher_instances{state="unhealthy"}'] == 1

    healthy = await env.instance(dispatcher)
    await eventually(lambda: healthy.handoffs, message="hand-off to the healthy instance")
    assert (healthy.handoffs[0].job_id, healthy.handoffs[0].attempt) == (job, 1)
    # The broken one takes work again once its heartbeat says it is healthy.
    broken.answer = None
    await broken.heartbeat()
    assert not await _unhealthy(dispatcher, broken.id)


async def test_an_unreachable_instance_is_skipped(env: Env) -> None:
    dispatcher = await env.dispatcher()
    user = await make_user(env.db)
    healthy = await env.instance(dispatcher, heartbeat_every=None)
    healthy.answer = 409  # full for now: no hand-off lands anywhere yet
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        address = f"http://127.0.0.1:{closed.getsockname()[1]}"
    dead = InstanceRegistration(
        id=uuid.uuid4(), address=address, capacity=1, catalogue_hash=healthy.catalogue
    )
    await healthy.client.register(dead)
    [job] = await make_jobs(env.db, user, 1, healthy.catalogue)
    await eventually(lambda: _all_unhealthy(dispatcher, [dead.id, healthy.id]), message="both refused")
    metrics = await dispatcher.metrics()
    assert metrics['cc_dispatcher_handoff_failures_total{reason="unreachable"}'] >= 1
    assert metrics['cc_dispatcher_handoff_failures_total{reason="full"}'] >= 1
    row = (await job_rows(env.db, [job]))[job]
    assert (row.status, row.attempts) == ("pending", 0)
    healthy.answer = None
    await healthy.heartbeat()
    await eventually(lambda: healthy.handoffs, message="hand-off once healthy again")
    assert (healthy.handoffs[0].job_id, healthy.handoffs[0].attempt) == (job, 1)


async def _unhealthy(dispatcher: RunningDispatcher, instance_id: uuid.UUID) -> bool:
    return await _all_unhealthy(dispatcher, [instance_id])


async def _all_unhealthy(dispatcher: RunningDispatcher, instance_ids: list[uuid.UUID]) -> bool:
    listed = (await dispatcher.http.get("/instances")).json()["instances"]
    unhealthy = {i["id"] for i in listed if i["state"] == "unhealthy"}
    return {str(i) for i in instance_ids} <= unhealthy


async def test_an_unanswered_hand_off_is_left_to_the_lease(env: Env) -> None:
    """Sent, but no answer: the instance may have the job. Its heartbeats say so, and it keeps it."""
    dispatcher = await env.dispatcher(handoff_timeout=0.2)
    slow = await env.instance(dispatcher, heartbeat_every=None)
    slow.delay = 1.0
    user = await make_user(env.db)
    [job] = await make_jobs(env.db, user, 1, slow.catalogue)
    await eventually(lambda: _unhealthy(dispatcher, slow.id), message="marked unhealthy")
    assert (await dispatcher.metrics())['cc_dispatcher_handoff_failures_total{reason="no_answer"}'] == 1
    row = (await job_rows(env.db, [job]))[job]
    assert (row.status, row.attempts, row.instance_id) == ("assigned", 1, slow.id)  # not taken back
    assert await slow.heartbeat() == {job: "assigned"}  # it did get the job: the lease is renewed
    assert not await _unhealthy(dispatcher, slow.id)
