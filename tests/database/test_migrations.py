"""The Alembic migrations and the models describe the same schema."""

from __future__ import annotations

import asyncio

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from database.engine import async_url
from database.migrate import upgrade
from database.models import Base


async def test_models_and_migrations_do_not_drift(database_url: str) -> None:
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
    finally:
        await engine.dispose()
    assert diff == [], f"models differ from migrations; run `alembic revision --autogenerate`: {diff}"


async def test_upgrade_is_idempotent_and_installs_the_trigger(database_url: str) -> None:
    await asyncio.to_thread(upgrade, database_url)  # already at head: a no-op
    engine = create_async_engine(async_url(database_url))
    try:
        async with engine.connect() as conn:
            trigger = await conn.scalar(
                text("SELECT count(*) FROM pg_trigger WHERE tgname = 'jobs_track_active'")
            )
    finally:
        await engine.dispose()
    assert trigger == 1
