"""Every transition of the state machine, legal and illegal, on real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy import text

from database.engine import Database
from database.job_states import (
    ACTIVE_STATUSES,
    ALLOWED_TRANSITIONS,
    TERMINAL_STATUSES,
    InvalidJobTransition,
    JobStatus,
    guarded_transition,
    transition,
)
from tests.database.helpers import make_catalogue, make_instance, make_jobs, make_user

ALL_PAIRS = [(s, t) for s in JobStatus for t in JobStatus]


async def _job_in(db: Database, status: JobStatus) -> tuple[uuid.UUID, uuid.UUID]:
    user = await make_user(db)
    catalogue = await make_catalogue(db)
    [job_id] = await make_jobs(db, user, 1, catalogue)
    async with db.session() as s:
        # Put the job straight into the wanted state (test setup, bypassing the machine on purpose).
        await s.execute(
            text("UPDATE jobs SET status = :st, sealed_secrets = '\\x01' WHERE id = :id"),
            {"st": status.value, "id": job_id},
        )
    return job_id, user


@pytest.mark.parametrize(("source", "target"), ALL_PAIRS, ids=[f"{s}->{t}" for s, t in ALL_PAIRS])
async def test_transition_is_applied_exactly_when_the_table_allows_it(
    db: Database, source: JobStatus, target: JobStatus
) -> None:
    job_id, _ = await _job_in(db, source)
    allowed = target in ALLOWED_TRANSITIONS[source]
    async with db.session() as s:
        if allowed:
            result = await transition(s, job_id, target)
            assert result.status is target
        else:
            with pytest.raises(InvalidJobTransition) as err:
                await transition(s, job_id, target)
            assert err.value.current is source
            assert err.value.status_code == 409
    async with db.session() as s:
        row = (
            await s.execute(
                text("SELECT status, finished_at, sealed_secrets FROM jobs WHERE id = :id"), {"id": job_id}
            )
        ).one()
    assert row.status == (target if allowed else source).value
    if allowed and target in TERMINAL_STATUSES:
        assert row.finished_at is not None
        assert row.sealed_secrets is None  # credentials never outlive the job


async def test_guarded_transition_follows_the_same_table(db: Database) -> None:
    """The asyncpg path an inference instance uses: the same edges, and only for the holder."""
    owner = await make_instance(db, await make_catalogue(db))
    for source, target in ALL_PAIRS:
        job_id, _ = await _job_in(db, source)
        async with db.session() as s:
            await s.execute(
                text("UPDATE jobs SET instance_id = :i WHERE id = :id"), {"i": owner, "id": job_id}
            )
        async with db.raw() as conn:
            with pytest.raises(InvalidJobTransition):
                await guarded_transition(conn, job_id, target, instance_id=uuid.uuid4())
            if target in ALLOWED_TRANSITIONS[source]:
                result = await guarded_transition(conn, job_id, target, instance_id=owner, error={"e": 1})
                assert result.status is target and result.job_id == job_id
            else:
                with pytest.raises(InvalidJobTransition) as err:
                    await guarded_transition(conn, job_id, target, instance_id=owner)
                assert err.value.current is source
            row = await conn.fetchrow(
                "SELECT status, finished_at, error::text FROM jobs WHERE id = $1", job_id
            )
        allowed = target in ALLOWED_TRANSITIONS[source]
        assert row["status"] == (target if allowed else source).value, (source, target)
        assert (row["error"] == '{"e": 1}') is allowed
        assert (row["finished_at"] is not None) is (allowed and target in TERMINAL_STATUSES)


async def test_guarded_transition_honours_expected(db: Database) -> None:
    owner = await make_instance(db, await make_catalogue(db))
    job_id, _ = await _job_in(db, JobStatus.IN_PROGRESS)
    async with db.session() as s:
        await s.execute(text("UPDATE jobs SET instance_id = :i WHERE id = :id"), {"i": owner, "id": job_id})
    async with db.raw() as conn:
        with pytest.raises(InvalidJobTransition) as err:
            await guarded_transition(
                conn, job_id, JobStatus.IN_PROGRESS, instance_id=owner, expected={JobStatus.ASSIGNED}
            )
    assert err.value.current is JobStatus.IN_PROGRESS


def test_terminal_states_are_final() -> None:
    for status in TERMINAL_STATUSES:
        assert ALLOWED_TRANSITIONS[status] == frozenset()


async def test_unknown_job_reports_no_current_state(db: Database) -> None:
    async with db.session() as s:
        with pytest.raises(InvalidJobTransition) as err:
            await transition(s, uuid.uuid4(), JobStatus.CANCELLED)
    assert err.value.current is None


async def test_two_racing_actors_cannot_both_win(db: Database) -> None:
    """A cancel and a completion racing on one running job: exactly one succeeds."""
    for _ in range(20):
        job_id, _ = await _job_in(db, JobStatus.IN_PROGRESS)

        async def attempt(target: JobStatus, job_id: uuid.UUID = job_id) -> bool:
            try:
                async with db.session() as s:
                    await transition(s, job_id, target)
                return True
            except InvalidJobTransition:
                return False

        wins = await asyncio.gather(attempt(JobStatus.COMPLETED), attempt(JobStatus.CANCELLED))
        assert sorted(wins) == [False, True]


async def test_instance_guard_refuses_a_late_report_from_another_instance(db: Database) -> None:
    job_id, _ = await _job_in(db, JobStatus.IN_PROGRESS)
    owner = uuid.uuid4()
    async with db.session() as s:
        await s.execute(text("INSERT INTO inference_instances (id, address) VALUES (:i, 'x')"), {"i": owner})
        await s.execute(text("UPDATE jobs SET instance_id = :i WHERE id = :id"), {"i": owner, "id": job_id})
    async with db.session() as s:
        with pytest.raises(InvalidJobTransition):
            await transition(s, job_id, JobStatus.COMPLETED, instance_id=uuid.uuid4())
    async with db.session() as s:
        result = await transition(s, job_id, JobStatus.COMPLETED, instance_id=owner)
    assert result.status is JobStatus.COMPLETED


async def test_expected_narrows_the_sources(db: Database) -> None:
    job_id, _ = await _job_in(db, JobStatus.IN_PROGRESS)
    async with db.session() as s:
        with pytest.raises(InvalidJobTransition):
            await transition(s, job_id, JobStatus.CANCELLED, expected={JobStatus.PENDING})


async def test_active_job_counter_follows_every_status_change(db: Database) -> None:
    job_id, user = await _job_in(db, JobStatus.PENDING)
    path = [
        JobStatus.ASSIGNED,
        JobStatus.IN_PROGRESS,
        JobStatus.PENDING,
        JobStatus.ASSIGNED,
        JobStatus.IN_PROGRESS,
        JobStatus.CANCELLING,
        JobStatus.CANCELLED,
    ]
    for target in path:
        async with db.session() as s:
            await transition(s, job_id, target)
            active = await s.scalar(text("SELECT active_jobs FROM users WHERE id = :u"), {"u": user})
        assert active == (1 if target in ACTIVE_STATUSES else 0), target
