"""Database.raw(): the asyncpg fast path shares nothing stale between checkouts."""

from __future__ import annotations

import pytest

from database.engine import Database


async def test_raw_connection_runs_statements_that_commit_by_themselves(db: Database) -> None:
    async with db.raw() as conn:
        await conn.execute("CREATE TABLE raw_probe (n int)")
        await conn.execute("INSERT INTO raw_probe VALUES (1)")
    async with db.autocommit() as session:
        from sqlalchemy import text

        assert (await session.execute(text("SELECT count(*) FROM raw_probe"))).scalar() == 1


async def test_a_transaction_left_open_is_rolled_back_on_release(db: Database) -> None:
    async with db.raw() as conn:
        await conn.execute("CREATE TABLE raw_probe (n int)")
    with pytest.raises(RuntimeError):
        async with db.raw() as conn:
            await conn.execute("BEGIN")  # not through conn.transaction(): nothing closes it but the pool
            await conn.execute("INSERT INTO raw_probe VALUES (1)")
            raise RuntimeError("the caller failed mid-transaction")
    for _ in range(3):  # whichever pooled connection comes back: none is inside a transaction
        async with db.raw() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT count(*) FROM raw_probe") == 0


async def test_a_transaction_commits_or_rolls_back_as_a_whole(db: Database) -> None:
    async with db.raw() as conn:
        await conn.execute("CREATE TABLE raw_probe (n int PRIMARY KEY)")
        with pytest.raises(Exception, match="duplicate key"):
            async with conn.transaction():
                await conn.execute("INSERT INTO raw_probe VALUES (1)")
                await conn.execute("INSERT INTO raw_probe VALUES (1)")
        assert await conn.fetchval("SELECT count(*) FROM raw_probe") == 0


async def test_dispose_closes_the_raw_pool_and_a_later_use_reopens_it(database_url: str) -> None:
    database = Database(database_url, application_name="tests", pool_size=2)
    try:
        async with database.raw() as conn:
            assert await conn.fetchval("SELECT current_setting('application_name')") == "tests"
        await database.dispose()
        async with database.raw() as conn:
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await database.dispose()
