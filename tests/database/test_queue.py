"""Claiming, fairness, per-user limits, leases and deadlines of the dispatch queue."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

from sqlalchemy import text

from database.engine import Database
from database.job_states import JobStatus, transition
from database.repositories.queue import QueueRepository, claim_jobs
from tests.database.helpers import make_catalogue, make_instance, make_jobs, make_user

CLAIM = {"default_user_limit": 1000, "lease_seconds": 60.0, "execution_timeout": 1800.0}


async def claim(db: Database, catalogue: str, slots: list[uuid.UUID], **overrides: float) -> list:
    """A claim as the dispatcher makes it (raw connection, own transaction)."""
    async with db.raw() as conn, conn.transaction():
        return await claim_jobs(conn, catalogue=catalogue, slots=slots, **{**CLAIM, **overrides})


async def statuses(db: Database) -> Counter[str]:
    async with db.session() as s:
        rows = await s.execute(text("SELECT status, count(*) FROM jobs GROUP BY status"))
        return Counter({r[0]: r[1] for r in rows})


async def test_claim_assigns_each_job_to_one_slot_with_a_lease(db: Database) -> None:
    catalogue = await make_catalogue(db)
    user = await make_user(db)
    await make_jobs(db, user, 3, catalogue)
    instances = [await make_instance(db, catalogue) for _ in range(2)]
    claimed = await claim(db, catalogue, instances)
    assert len(claimed) == 2
    assert sorted(c.instance_id for c in claimed) == sorted(instances)
    async with db.session() as s:
        rows = (await s.execute(text("SELECT status, lease_expires_at, attempts FROM jobs"))).all()
    assigned = [r for r in rows if r.status == "assigned"]
    assert len(assigned) == 2 and all(r.lease_expires_at and r.attempts == 1 for r in assigned)


async def test_a_claim_reports_who_got_what_and_when(db: Database) -> None:
    catalogue = await make_catalogue(db)
    user = await make_user(db)
    [job_id] = await make_jobs(db, user, 1, catalogue)
    instance = await make_instance(db, catalogue)
    [claimed] = await claim(db, catalogue, [instance])
    assert (claimed.id, claimed.user_id, claimed.instance_id, claimed.attempts) == (job_id, user, instance, 1)
    assert claimed.created_at is not None and claimed.assigned_at is not None


async def test_eight_concurrent_claimers_never_share_a_job(db: Database) -> None:
    catalogue = await make_catalogue(db)
    users = [await make_user(db) for _ in range(5)]
    for user in users:
        await make_jobs(db, user, 60, catalogue)
    instance = await make_instance(db, catalogue, capacity=10_000)

    async def worker() -> list[uuid.UUID]:
        got: list[uuid.UUID] = []
        while True:
            batch = await claim(db, catalogue, [instance] * 7)
            if not batch:
                # Others may still hold locks on the last rows; stop only when nothing is pending.
                if (await statuses(db))["pending"] == 0:
                    return got
                await asyncio.sleep(0.01)
            got.extend(c.id for c in batch)

    results = await asyncio.gather(*(worker() for _ in range(8)))
    every = [job for r in results for job in r]
    assert len(every) == 300
    assert len(set(every)) == 300, "a job was handed out twice"
    assert sum(1 for r in results if r) > 1, "the claimers did not actually run concurrently"
    assert (await statuses(db))["assigned"] == 300


async def test_fairness_light_user_is_not_stuck_behind_heavy_batch(db: Database) -> None:
    catalogue = await make_catalogue(db)
    heavy = await make_user(db, "heavy")
    light = await make_user(db, "light")
    await make_jobs(db, heavy, 200, catalogue)  # submitted first
    light_jobs = await make_jobs(db, light, 3, catalogue)
    instance = await make_instance(db, catalogue, capacity=1000)
    served: list[uuid.UUID] = []
    for _ in range(6):  # one slot at a time, as instances free up one by one
        [c] = await claim(db, catalogue, [instance])
        served.append(c.user_id)
    # Round robin: the light user's three jobs run in the first six, alternating with the heavy user.
    assert served == [heavy, light, heavy, light, heavy, light] or served == [
        light,
        heavy,
        light,
        heavy,
        light,
        heavy,
    ]
    async with db.session() as s:
        done = await s.scalar(
            text("SELECT count(*) FROM jobs WHERE id = ANY(:ids) AND status = 'assigned'"),
            {"ids": light_jobs},
        )
    assert done == 3


async def test_fairness_within_one_batch_interleaves_users(db: Database) -> None:
    catalogue = await make_catalogue(db)
    users = [await make_user(db) for _ in range(4)]
    for user in users:
        await make_jobs(db, user, 10, catalogue)
    instance = await make_instance(db, catalogue, capacity=100)
    claimed = await claim(db, catalogue, [instance] * 8)
    assert Counter(c.user_id for c in claimed) == Counter({u: 2 for u in users})


async def test_priority_goes_before_fairness(db: Database) -> None:
    catalogue = await make_catalogue(db)
    a, b = await make_user(db), await make_user(db)
    await make_jobs(db, a, 5, catalogue)
    urgent = await make_jobs(db, b, 3, catalogue, priority=10)
    instance = await make_instance(db, catalogue, capacity=100)
    claimed = await claim(db, catalogue, [instance] * 3)
    assert sorted(c.id for c in claimed) == sorted(urgent)


async def test_per_user_limit_is_honoured_and_freed_on_finish(db: Database) -> None:
    catalogue = await make_catalogue(db)
    limited = await make_user(db, limit=2)
    other = await make_user(db)
    await make_jobs(db, limited, 10, catalogue)
    await make_jobs(db, other, 1, catalogue)
    instance = await make_instance(db, catalogue, capacity=100)
    claimed = await claim(db, catalogue, [instance] * 10)
    assert Counter(c.user_id for c in claimed) == Counter({limited: 2, other: 1})
    assert await claim(db, catalogue, [instance] * 10) == []
    finished = next(c.id for c in claimed if c.user_id == limited)
    async with db.session() as s:  # one of the limited user's jobs finishes: one more may start
        await transition(s, finished, JobStatus.IN_PROGRESS)
        await transition(s, finished, JobStatus.COMPLETED)
    again = await claim(db, catalogue, [instance] * 10)
    assert [c.user_id for c in again] == [limited]


async def test_default_limit_applies_when_user_has_no_override(db: Database) -> None:
    catalogue = await make_catalogue(db)
    user = await make_user(db)
    await make_jobs(db, user, 10, catalogue)
    instance = await make_instance(db, catalogue, capacity=100)
    assert len(await claim(db, catalogue, [instance] * 10, default_user_limit=3)) == 3


async def test_concurrent_claimers_cannot_overshoot_a_user_limit(db: Database) -> None:
    catalogue = await make_catalogue(db)
    user = await make_user(db, limit=3)
    await make_jobs(db, user, 50, catalogue)
    instance = await make_instance(db, catalogue, capacity=1000)
    results = await asyncio.gather(*(claim(db, catalogue, [instance] * 5) for _ in range(8)))
    assert sum(len(r) for r in results) == 3


async def test_jobs_only_go_to_catalogues_that_can_run_them(db: Database) -> None:
    small = await make_catalogue(db, {"EmptyImage": {}, "SaveImage": {"output_node": True}})
    big = await make_catalogue(db, {"EmptyImage": {}, "SaveImage": {"output_node": True}, "Other": {}})
    user = await make_user(db)
    only_big = await make_jobs(db, user, 2, big)  # runnable_on = [big] only
    instance_small = await make_instance(db, small, capacity=10)
    assert await claim(db, small, [instance_small] * 10) == []
    instance_big = await make_instance(db, big, capacity=10)
    assert sorted(c.id for c in await claim(db, big, [instance_big] * 10)) == sorted(only_big)


async def test_lease_renewal_only_for_the_holding_instance(db: Database) -> None:
    catalogue = await make_catalogue(db)
    user = await make_user(db)
    await make_jobs(db, user, 1, catalogue)
    instance = await make_instance(db, catalogue)
    [job] = await claim(db, catalogue, [instance], lease_seconds=1)
    async with db.session() as s:
        assert await QueueRepository(s).renew_leases(uuid.uuid4(), [job.id], 60) == {}
        assert await QueueRepository(s).renew_leases(instance, [job.id], 60) == {job.id: JobStatus.ASSIGNED}
        lease = await s.scalar(
            text("SELECT lease_expires_at - now() FROM jobs WHERE id = :id"), {"id": job.id}
        )
    assert lease.total_seconds() > 50


async def test_expired_lease_requeues_then_errors_after_max_attempts(db: Database) -> None:
    catalogue = await make_catalogue(db)
    user = await make_user(db)
    [job_id] = await make_jobs(db, user, 1, catalogue, max_attempts=2)
    instance = await make_instance(db, catalogue)
    for attempt in (1, 2):
        [job] = await claim(db, catalogue, [instance], lease_seconds=0.01)
        assert job.attempts == attempt
        await asyncio.sleep(0.05)
        async with db.session() as s:
            [expired] = await QueueRepository(s).expire_leases()
        assert expired.id == job_id and expired.lost_instance_id == instance
        assert expired.status == (JobStatus.PENDING if attempt == 1 else JobStatus.ERROR)
    async with db.session() as s:
        row = (
            await s.execute(
                text(
                    "SELECT status, error, instance_id, active_jobs FROM jobs "
                    "JOIN users u ON u.id = jobs.user_id"
                )
            )
        ).one()
    assert row.status == "error" and row.error["type"] == "lease_expired" and row.active_jobs == 0


async def test_expired_lease_of_a_cancelling_job_ends_cancelled(db: Database) -> None:
    catalogue = await make_catalogue(db)
    user = await make_user(db)
    await make_jobs(db, user, 1, catalogue)
    instance = await make_instance(db, catalogue)
    [job] = await claim(db, catalogue, [instance], lease_seconds=0.01)
    async with db.session() as s:
        await transition(s, job.id, JobStatus.CANCELLING)
    await asyncio.sleep(0.05)
    async with db.session() as s:
        [expired] = await QueueRepository(s).expire_leases()
    assert expired.status is JobStatus.CANCELLED


async def test_late_report_after_requeue_is_refused(db: Database) -> None:
    from database.job_states import InvalidJobTransition

    catalogue = await make_catalogue(db)
    user = await make_user(db)
    await make_jobs(db, user, 1, catalogue)
    old, new = await make_instance(db, catalogue), await make_instance(db, catalogue)
    [job] = await claim(db, catalogue, [old], lease_seconds=0.01)
    await asyncio.sleep(0.05)
    async with db.session() as s:
        await QueueRepository(s).expire_leases()
    [again] = await claim(db, catalogue, [new])
    assert again.id == job.id
    async with db.session() as s:
        try:
            await transition(s, job.id, JobStatus.COMPLETED, instance_id=old)
            raise AssertionError("late report accepted")
        except InvalidJobTransition:
            pass


async def test_execution_and_queue_deadlines(db: Database) -> None:
    from datetime import UTC, datetime, timedelta

    catalogue = await make_catalogue(db)
    user = await make_user(db)
    [waiting] = await make_jobs(
        db, user, 1, catalogue, queue_deadline_at=datetime.now(UTC) - timedelta(seconds=1)
    )
    [running] = await make_jobs(db, user, 1, catalogue)
    async with db.session() as s:
        assert await QueueRepository(s).queue_timeouts() == [(waiting, user)]
    instance = await make_instance(db, catalogue)
    [job] = await claim(db, catalogue, [instance], execution_timeout=0.01)
    assert job.id == running
    await asyncio.sleep(0.05)
    async with db.session() as s:
        assert await QueueRepository(s).execution_timeouts() == [(running, user, instance)]
    assert (await statuses(db))["timeout"] == 2
