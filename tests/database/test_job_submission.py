"""submit_job(): ingest's one-statement insert, routed by the catalogues and guarded by the live set."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from database.engine import Database, sync_url
from database.repositories.broadcast import Notification
from database.repositories.fleet import FleetRepository
from database.repositories.jobs import DuplicateJob, JobRepository, NewJob, count_queue_remaining, submit_job
from tests.database.helpers import CATALOGUE, PROMPT, make_catalogue, make_instance, make_user

REQUIRED = ["EmptyImage", "SaveImage"]


def new_job(user: uuid.UUID, job_id: uuid.UUID | None = None, number: float | None = None) -> NewJob:
    return NewJob(
        id=job_id or uuid.uuid4(), user_id=user, prompt=PROMPT, required_nodes=REQUIRED, number=number
    )


async def test_routed_to_every_registered_catalogue_with_all_classes(db: Database) -> None:
    user = await make_user(db)
    full = await make_catalogue(db)
    away = await make_catalogue(db, {**CATALOGUE, "Extra": {"output_node": True}})
    partial = await make_catalogue(db, {"EmptyImage": {"output_node": False}})
    await make_instance(db, full)
    await make_instance(db, partial)
    gone = await make_instance(db, away)
    async with db.session() as s:
        await FleetRepository(s).set_status(gone, "lost")
    job = new_job(user)
    async with db.raw() as conn:
        submitted = await submit_job(conn, job, front=False, expected_live={full, partial})
        assert await count_queue_remaining(conn, user) == 1
    assert submitted.current and submitted.live == {full, partial}
    async with db.session() as s:
        stored = await JobRepository(s).get(user, job.id)
    assert stored is not None and stored.status == "pending"
    assert sorted(stored.runnable_on) == sorted([full, away])  # away instances may come back
    assert stored.number == submitted.number and stored.prompt == PROMPT


async def test_a_stale_live_set_inserts_nothing_and_tells_the_current_one(db: Database) -> None:
    user = await make_user(db)
    catalogue = await make_catalogue(db)
    await make_instance(db, catalogue)
    job = new_job(user)
    async with db.raw() as conn:
        stale = await submit_job(conn, job, front=False, expected_live=set())
        assert not stale.current and stale.number is None and stale.live == {catalogue}
        assert await count_queue_remaining(conn, user) == 0
        unguarded = await submit_job(conn, job, front=False, expected_live=None)
    assert unguarded.current and unguarded.number is not None


async def test_a_repeated_id_is_refused_whoever_owns_it(db: Database) -> None:
    alice, bob = await make_user(db), await make_user(db)
    job = new_job(alice)
    async with db.raw() as conn:
        await submit_job(conn, job, front=False, expected_live=None)
        with pytest.raises(DuplicateJob):
            await submit_job(conn, new_job(bob, job.id), front=False, expected_live=None)
        assert await count_queue_remaining(conn, bob) == 0


async def test_numbers_given_next_or_in_front(db: Database) -> None:
    user = await make_user(db)
    async with db.raw() as conn:
        given = await submit_job(conn, new_job(user, number=5.0), front=True, expected_live=None)
        first = await submit_job(conn, new_job(user), front=False, expected_live=None)
        front = await submit_job(conn, new_job(user), front=True, expected_live=None)
    assert given.number == 5.0  # an explicit number wins over front
    assert first.number is not None and first.number > 0
    assert front.number is not None and front.number == -(first.number + 1)


async def test_the_notification_goes_out_only_with_an_inserted_job(db: Database, database_url: str) -> None:
    user = await make_user(db)
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(sync_url(database_url))
    await listener.add_listener("submit_probe", lambda *args: heard.put_nowait(args[-1]))
    try:
        job = new_job(user)
        async with db.raw() as conn:
            note = Notification("submit_probe", ["inserted"])
            await submit_job(conn, job, front=False, expected_live=None, notify=note)
            await submit_job(conn, new_job(user), front=False, expected_live={"x"}, notify=note)  # stale
            with pytest.raises(DuplicateJob):
                await submit_job(conn, job, front=False, expected_live=None, notify=note)
            await conn.execute("SELECT pg_notify('submit_probe', 'end')")
        assert [await asyncio.wait_for(heard.get(), 10) for _ in range(2)] == ["inserted", "end"]
    finally:
        await listener.close()
