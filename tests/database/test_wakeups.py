"""The dispatcher's wake-up: a NOTIFY on commit exactly when a scheduling pass may find work."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import text

from database.engine import Database, sync_url
from database.job_states import JobStatus
from database.wakeups import DISPATCH_CHANNEL, listen_for_wakeups
from tests.database.helpers import make_catalogue, make_jobs, make_user


class Wakeups:
    def __init__(self) -> None:
        self.count = 0
        self.event = asyncio.Event()

    def __call__(self) -> None:
        self.count += 1
        self.event.set()

    async def next(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self.event.wait(), timeout)
        self.event.clear()

    async def none(self, within: float = 0.3) -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(self.event.wait(), within)


@contextlib.asynccontextmanager
async def listening(database_url: str) -> AsyncIterator[Wakeups]:
    wakeups = Wakeups()
    task = asyncio.create_task(listen_for_wakeups(database_url, wakeups))
    try:
        await wakeups.next()  # the first call: on (re)connect
        yield wakeups
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def set_status(db: Database, job_id: uuid.UUID, status: JobStatus) -> None:
    async with db.session() as session:
        await session.execute(
            text("UPDATE jobs SET status = :s WHERE id = :id"), {"s": status.value, "id": job_id}
        )


async def test_a_new_pending_job_and_a_freed_slot_wake_the_dispatcher(
    db: Database, database_url: str
) -> None:
    async with listening(database_url) as wakeups:
        [job_id] = await make_jobs(db, await make_user(db), 1, await make_catalogue(db))
        await wakeups.next()  # inserted pending
        await set_status(db, job_id, JobStatus.ASSIGNED)
        await wakeups.none()  # claimed: nothing new to dispatch
        await set_status(db, job_id, JobStatus.IN_PROGRESS)
        await wakeups.none()
        await set_status(db, job_id, JobStatus.COMPLETED)
        await wakeups.none()  # a slot is free, but no job waits for it
        await set_status(db, job_id, JobStatus.PENDING)
        await wakeups.next()  # back in the queue
        await set_status(db, job_id, JobStatus.ASSIGNED)
        await wakeups.none()
        await make_jobs(db, await make_user(db), 1, await make_catalogue(db))  # one waits
        await wakeups.next()
        await set_status(db, job_id, JobStatus.ERROR)
        await wakeups.next()  # a slot is free and a job waits for it


async def test_the_listener_comes_back_after_losing_its_connection(db: Database, database_url: str) -> None:
    async with listening(database_url) as wakeups:
        admin = await asyncpg.connect(sync_url(database_url))
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query ILIKE $1",
                f"%LISTEN%{DISPATCH_CHANNEL}%",
            )
            assert killed == 1
        finally:
            await admin.close()
        await wakeups.next(timeout=10)  # reconnected: one wake-up for what it may have missed
        await make_jobs(db, await make_user(db), 1, await make_catalogue(db))
        await wakeups.next()
