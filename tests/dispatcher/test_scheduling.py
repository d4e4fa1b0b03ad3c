"""Scheduling through the whole service: dispatchers on uvicorn, fake instances over real HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

from database.job_states import JobStatus
from tests.database.helpers import make_catalogue, make_jobs, make_user
from tests.dispatcher.conftest import Env, eventually, job_rows, status_of


async def test_a_pending_job_is_handed_to_a_free_instance_with_assigned_event(env: Env) -> None:
    dispatcher = await env.dispatcher()
    fake = await env.instance(dispatcher)
    user = await make_user(env.db)
    [job] = await make_jobs(env.db, user, 1, fake.catalogue)
    answer = await dispatcher.http.post("/dispatch")
    assert answer.status_code == 202
    await eventually(lambda: fake.handoffs, message="hand-off")
    assert [(h.job_id, h.attempt) for h in fake.handoffs] == [(job, 1)]
    row = (await job_rows(env.db, [job]))[job]
    assert (row.status, row.instance_id, row.attempts) == ("assigned", fake.id, 1)
    assert dispatcher.publisher.statuses(job) == ["assigned"]


async def test_a_lost_nudge_still_dispatches(env: Env) -> None:
    """No POST /dispatch at all: the background loop finds the job by polling."""
    dispatcher = await env.dispatcher(poll_interval=0.2)
    fake = await env.instance(dispatcher)
    passes = dispatcher.state.loop.passes
    await eventually(lambda: dispatcher.state.loop.passes > passes + 1, message="an idle pass")
    user = await make_user(env.db)
    [job] = await make_jobs(env.db, user, 1, fake.catalogue)  # inserted behind the dispatcher's back
    await eventually(lambda: fake.handoffs, message="hand-off by the polling loop")
    assert fake.handoffs[0].job_id == job
    assert await status_of(env.db, job) == "assigned"


async def test_concurrent_dispatchers_never_hand_a_job_out_twice(env: Env) -> None:
    dispatchers = [await env.dispatcher(poll_interval=0.02) for _ in range(3)]
    users = [await make_user(env.db) for _ in range(5)]
    catalogue = await make_catalogue(env.db)
    jobs = [j for user in users for j in await make_jobs(env.db, user, 30, catalogue)]
    fakes = [await env.instance(dispatchers[k % 3], capacity=2, auto_complete=True) for k in range(4)]

    async def nudge_all() -> None:  # every replica nudged at once, again and again
        while True:
            await asyncio.gather(*(d.http.post("/dispatch") for d in dispatchers))

    nudger = asyncio.create_task(nudge_all())
    try:
        done = await eventually(lambda: _all_completed(env, jobs), within=60, message="every job completed")
    finally:
        nudger.cancel()
    assert done
    handed = Counter(h.job_id for f in fakes for h in f.handoffs)
    assert set(handed) == set(jobs)
    assert max(handed.values()) == 1, "a job was handed to two instances"
    assert all(f.rejections == 0 and f.max_running <= f.capacity for f in fakes), "an instance overfilled"
    per_replica = [(await d.metrics())["cc_dispatcher_jobs_dispatched_total"] for d in dispatchers]
    assert sum(per_replica) == len(jobs)
    assert sum(1 for n in per_replica if n > 0) >= 2, f"replicas did not share the work: {per_replica}"


async def _all_completed(env: Env, jobs: list[uuid.UUID]) -> bool:
    rows = await job_rows(env.db, jobs)
    return all(r.status == "completed" for r in rows.values())


async def test_a_light_user_is_not_stuck_behind_a_heavy_batch(env: Env) -> None:
    catalogue = await make_catalogue(env.db)
    heavy, light = await make_user(env.db, "heavy"), await make_user(env.db, "light")
    await make_jobs(env.db, heavy, 40, catalogue)  # submitted first
    light_jobs = await make_jobs(env.db, light, 4, catalogue)
    dispatcher = await env.dispatcher()
    fake = await env.instance(dispatcher, capacity=1, auto_complete=True)
    await eventually(lambda: len(fake.handoffs) >= 10, within=30, message="ten hand-offs")
    order = [h.job_id for h in fake.handoffs]
    positions = [order.index(j) for j in light_jobs]
    # Round robin over users: the light user's jobs alternate with the heavy user's.
    assert max(positions) <= 7, f"light user's jobs at {positions} of {len(order)} hand-offs"


async def test_per_user_limit_holds_slots_free_and_releases_on_finish(env: Env) -> None:
    catalogue = await make_catalogue(env.db)
    limited = await make_user(env.db, limit=2)  # per-user override in the database
    default = await make_user(env.db)  # the configured default applies
    limited_jobs = await make_jobs(env.db, limited, 5, catalogue)
    await make_jobs(env.db, default, 5, catalogue)
    dispatcher = await env.dispatcher(default_user_limit=3)
    fakes = [await env.instance(dispatcher, capacity=2) for _ in range(5)]  # 10 slots, never finish

    async def running() -> Counter[uuid.UUID]:
        rows = await job_rows(env.db)
        return Counter(r.user_id for r in rows.values() if r.status == "assigned")

    await eventually(lambda: _equals(running(), Counter({limited: 2, default: 3})), message="2 + 3")
    await dispatcher.http.post("/dispatch")  # a further pass changes nothing: both users are at limit
    assert await running() == Counter({limited: 2, default: 3})
    assert sum(len(f.handoffs) for f in fakes) == 5

    first = next(j for j in limited_jobs if j in {h.job_id for f in fakes for h in f.handoffs})
    holder = next(f for f in fakes if first in f.running)
    await holder.begin(first)
    await holder.report(first, JobStatus.COMPLETED)  # one ends: one more of the limited user's may start
    await eventually(lambda: _equals(running(), Counter({limited: 2, default: 3})), message="refilled")
    rows = await job_rows(env.db, limited_jobs)
    assert sum(r.status == "completed" for r in rows.values()) == 1
    assert sum(r.status == "assigned" for r in rows.values()) == 2


async def _equals(value: object, expected: object) -> bool:
    return await value == expected  # type: ignore[misc]
