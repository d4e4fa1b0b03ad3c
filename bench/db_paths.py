"""CPU per statement on the three ways to reach PostgreSQL, which decides what the hot paths use.

    .venv/bin/python bench/db_paths.py [--statements 2000]      (TEST_DATABASE_URL or an embedded server)

Figures on the 2-core dev machine: SQLAlchemy AsyncSession.execute(text) ~145 us; the same statement in
`Database.session()` (BEGIN ... COMMIT) ~420-550 us; asyncpg on a held connection ~35 us;
`Database.raw()` checkout + statement ~110 us, + a transaction ~190 us.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from comfy_cloud import embedded_postgres
from database.engine import Database

QUERY = "SELECT CAST(:a AS int) + 1"
RAW_QUERY = "SELECT $1::int + 1"


async def cpu_per_call(calls: int, one: Callable[[], Awaitable[object]]) -> float:
    for _ in range(min(100, calls)):  # warm caches and prepared statements
        await one()
    started = time.process_time()
    for _ in range(calls):
        await one()
    return (time.process_time() - started) * 1e6 / calls


def report(label: str, us: float) -> None:
    print(f"{label:<46} {us:7.1f} us")


async def measure(url: str, calls: int) -> None:
    db = Database(url, application_name="bench-db-paths")
    query = text(QUERY)
    try:
        async with db.autocommit() as session:
            us = await cpu_per_call(calls, lambda: session.execute(query, {"a": 1}))
            report("SQLAlchemy session.execute(text), autocommit", us)

        async def in_session() -> None:
            async with db.session() as s:
                await s.execute(query, {"a": 1})

        report("Database.session() with one statement", await cpu_per_call(calls // 4, in_session))
        async with db.raw() as conn:
            us = await cpu_per_call(calls, lambda: conn.fetchval(RAW_QUERY, 1))
            report("asyncpg fetchval on a held connection", us)

        async def raw_checkout() -> None:
            async with db.raw() as c:
                await c.fetchval(RAW_QUERY, 1)

        async def raw_transaction() -> None:
            async with db.raw() as c, c.transaction():
                await c.fetchval(RAW_QUERY, 1)

        report("Database.raw() checkout + statement", await cpu_per_call(calls, raw_checkout))
        report("Database.raw() checkout + transaction", await cpu_per_call(calls, raw_transaction))
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--statements", type=int, default=2000)
    args = parser.parse_args()
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        asyncio.run(measure(url, args.statements))
        return
    with embedded_postgres.temporary() as url:
        asyncio.run(measure(url, args.statements))


if __name__ == "__main__":
    main()
