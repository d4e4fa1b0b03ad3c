"""Shared fixtures: a real PostgreSQL for every test that needs one.

Without TEST_DATABASE_URL an embedded server (pip wheel) starts once per session. The schema is built
once with Alembic into a template database; each test gets its own copy (CREATE DATABASE ... TEMPLATE),
so tests can commit, run concurrent connections, and never see each other's rows.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from comfy_cloud import embedded_postgres
from database.engine import Database, sync_url
from database.migrate import upgrade

FIXTURES = Path(__file__).parent / "fixtures" / "comfyui"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    with embedded_postgres.temporary() as server_url:
        yield server_url


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(sync_url(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_database(postgres_server_url: str) -> Iterator[str]:
    name = f"cc_template_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin(postgres_server_url, f'CREATE DATABASE "{name}"'))
    url = embedded_postgres.with_database(postgres_server_url, name)
    upgrade(url)
    yield name
    asyncio.run(_admin(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def database_url(postgres_server_url: str, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database of its own for one test."""
    name = f"cc_test_{uuid.uuid4().hex[:12]}"
    await _admin(postgres_server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    try:
        yield embedded_postgres.with_database(postgres_server_url, name)
    finally:
        await _admin(postgres_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url, application_name="tests", pool_size=12)
    try:
        yield database
    finally:
        await database.dispose()
