"""The queue SQL the dispatcher added or reshaped: batch-bounded claims that stay exact, taking back an
undelivered claim, ending the leases of lost instances, caps on attempts and on queue waiting, and
instance locks that keep concurrent dispatchers from overfilling an instance."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

from sqlalchemy import text

from database.engine import Database
from database.job_states import JobStatus
from database.repositories.queue import QueueRepository, dispatch_pass
from database.repositories.queue_stats import QueueStatsRepository
from tests.database.helpers import make_catalogue, make_instance, make_jobs, make_user
from tests.database.test_queue import claim


async def test_priority_stays_first_when_one_user_has_more_urgent_jobs_than_its_share(db: Database) -> None:
    """A has 2 urgent jobs then ordinary ones, B has 20 urgent ones; 10 slots: all 10 are urgent, even
    though a fair share of 10 slots between 2 users is 5 each (the claim must not fill with A's
    ordinary jobs; it may take fewer than 10 at once, but never a wrong one)."""
    catalogue = await make_catalogue(db)
    a, b = await make_user(db, "a"), await make_user(db, "b")
    a_urgent = await make_jobs(db, a, 2, catalogue, priority=10)
    await make_jobs(db, a, 5, catalogue)
    b_urgent = await make_jobs(db, b, 20, catalogue, priority=10)
    instance = await make_instance(db, catalogue, capacity=100)
    got: list[uuid.UUID] = []
    while len(got) < 10:
        batch = await claim(db, catalogue, [instance] * (10 - len(got)))
        assert batch, "a claim found nothing although urgent jobs wait"
        got += [c.id for c in batch]
    assert set(got) <= set(a_urgent) | set(b_urgent)
    assert set(a_urgent) <= set(got)


async def test_a_claim_takes_each_users_share_then_continues_in_round_robin(db: Database) -> None:
    catalogue = await make_catalogue(db)
    users = [await make_user(db) for _ in range(3)]
    for user in users:
        await make_jobs(db, user, 10, catalogue)
    few = await make_user(db)
    await make_jobs(db, few, 1, catalogue)
    instance = await make_instance(db, catalogue, capacity=100)
    claimed = await claim(db, catalogue, [instance] * 12)
    counts = Counter(c.user_id for c in claimed)
    assert counts[few] == 1
    assert all(counts[u] >= 3 for u in users) and max(counts.values()) - 1 <= min(counts[u] for u in users)


async def test_return_unstarted_gives_the_attempt_back_and_cannot_undo_a_later_claim(db: Database) -> None:
    catalogue = await make_catalogue(db)
    user = await make_user(db)
    [job_id] = await make_jobs(db, user, 1, catalogue)
    instance = await make_instance(db, catalogue)
    [job] = await claim(db, catalogue, [instance])
    async with db.session() as s:
        assert await QueueRepository(s).return_unstarted(job.id, instance, job.attempts) == user
        row = (await s.execute(text("SELECT status, attempts, instance_id FROM jobs"))).one()
    assert (row.status, row.attempts, row.instance_id) == ("pending", 0, None)
    [again] = await claim(db, catalogue, [instance])
    assert again.attempts == 1
    async with db.session() as s:  # a stale take-back (wrong attempt) changes nothing
        assert await QueueRepository(s).return_unstarted(job_id, instance, 5) is None
        assert await s.scalar(text("SELECT status FROM jobs")) == "assigned"


async def test_leases_of_lost_instances_end_at_once(db: Database) -> None:
    catalogue = await make_catalogue(db)
    user = await make_user(db)
    await make_jobs(db, user, 2, catalogue)
    lost, alive = await make_instance(db, catalogue), await make_instance(db, catalogue)
    claimed = await claim(db, catalogue, [lost, alive], lease_seconds=3600)
    async with db.session() as s:
        queue = QueueRepository(s)
        assert len(await queue.end_leases_of([lost])) == 1
        [expired] = await queue.expire_leases()
    assert expired.lost_instance_id == lost and expired.status is JobStatus.PENDING
    assert {c.instance_id for c in claimed} == {lost, alive}


async def test_max_attempts_caps_and_max_wait_expires(db: Database) -> None:
    catalogue = await make_catalogue(db)
    user = await make_user(db)
    [job_id] = await make_jobs(db, user, 1, catalogue, max_attempts=3)
    [waiting] = await make_jobs(db, user, 1, await make_catalogue(db, {"Other": {}}))
    instance = await make_instance(db, catalogue)
    await claim(db, catalogue, [instance], lease_seconds=0.01)
    await asyncio.sleep(0.05)
    async with db.session() as s:
        [expired] = await QueueRepository(s).expire_leases(max_attempts=1)
        assert (expired.id, expired.status) == (job_id, JobStatus.ERROR)
        assert await QueueRepository(s).queue_timeouts(max_wait=3600) == []
        assert await QueueRepository(s).queue_timeouts(max_wait=0.001) == [(waiting, user)]


async def test_instance_locks_keep_concurrent_passes_from_overfilling(db: Database) -> None:
    catalogue = await make_catalogue(db)
    for _ in range(4):
        await make_jobs(db, await make_user(db), 10, catalogue)
    instances = [await make_instance(db, catalogue, capacity=3) for _ in range(4)]
    pass_ = {"default_user_limit": 1000, "lease_seconds": 60, "execution_timeout": 60, "batch": 5}
    async with db.raw() as first, first.transaction():  # the pass's locks last until this commits
        claimed = await dispatch_pass(first, **pass_)
        assert len(claimed) == 12  # in batches of 5, 5 and 2 slots
        async with db.raw() as second:  # a concurrent pass finds every instance taken
            assert await dispatch_pass(second, **pass_) == []
    async with db.raw() as later:  # after the commit the count sees the claims
        assert await dispatch_pass(later, **pass_) == []
    async with db.session() as s:
        per_instance = Counter(
            (await s.execute(text("SELECT instance_id FROM jobs WHERE status = 'assigned'"))).scalars()
        )
    assert per_instance == {i: 3 for i in instances}
    assert Counter(a.job.instance_id for a in claimed) == per_instance
    addresses = {a.job.instance_id: a.address for a in claimed}
    async with db.session() as s:
        for instance_id, address in addresses.items():
            known = await s.scalar(
                text("SELECT address FROM inference_instances WHERE id = :i"), {"i": instance_id}
            )
            assert address == known


async def test_a_pass_spreads_a_batch_over_the_fleet(db: Database) -> None:
    """Each instance's first slot, then each one's second: one batch reaches every instance."""
    catalogue = await make_catalogue(db)
    await make_jobs(db, await make_user(db), 4, catalogue)
    instances = [await make_instance(db, catalogue, capacity=2) for _ in range(4)]
    async with db.raw() as conn:
        claimed = await dispatch_pass(
            conn, default_user_limit=1000, lease_seconds=60, execution_timeout=60, batch=8
        )
    assert sorted(a.job.instance_id for a in claimed) == sorted(instances)


async def test_a_pass_with_nothing_pending_locks_nothing(db: Database) -> None:
    instance = await make_instance(db, await make_catalogue(db))
    pass_ = {"default_user_limit": 10, "lease_seconds": 60, "execution_timeout": 60, "batch": 8}
    async with db.raw() as conn, conn.transaction():
        assert await dispatch_pass(conn, **pass_) == []
        async with db.raw() as other:  # NOWAIT: fails at once if the pass had locked the instance
            locked = "SELECT id FROM inference_instances WHERE id = $1 FOR NO KEY UPDATE NOWAIT"
            assert await other.fetchval(locked, instance) == instance


async def test_queue_stats_see_waiting_jobs_and_depth(db: Database) -> None:
    served = await make_catalogue(db)
    unserved = await make_catalogue(db, {"Other": {}})
    user = await make_user(db)
    await make_jobs(db, user, 2, served)
    waiting = await make_jobs(db, user, 3, unserved)
    await make_instance(db, served)
    async with db.session() as s:
        stats = QueueStatsRepository(s)
        depth = await stats.depth()
        found = await stats.waiting_for_capability(limit=2)
        states = await stats.instance_states()
    assert depth[JobStatus.PENDING] == 5 and depth[JobStatus.ASSIGNED] == 0
    assert found.total == 3 and found.job_ids == waiting[:2]
    assert states == {"live": 1}
