"""Engine and session factory. One place commits: `Database.session()`.

Repositories only flush; the request dependency or task that opened the session commits on success
and rolls back on error, so a multi-step operation never half-commits. `Database.autocommit()` is for
single statements, which commit by themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from sqlalchemy import event, exc, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

# Pooled connections older than this are replaced at checkout (no round trip): a connection that a
# proxy or NAT dropped silently while idle never reaches a request (see _drop_closed).
POOL_RECYCLE_SECONDS = 300


def async_url(url: str) -> str:
    """Accept the usual spellings (postgres://, postgresql://) and select the asyncpg driver."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in {"postgres", "postgresql", "postgresql+asyncpg"}:
        raise ValueError(f"not a PostgreSQL URL: {urlsplit(url).scheme or url!r}")
    return f"postgresql+asyncpg://{rest}"


def sync_url(url: str) -> str:
    """The same database for libpq-style tools (asyncpg.connect accepts it too)."""
    return "postgresql://" + async_url(url).partition("://")[2]


class Database:
    def __init__(self, url: str, *, application_name: str, pool_size: int = 10) -> None:
        self.url = async_url(url)
        self.engine: AsyncEngine = create_async_engine(
            self.url,
            pool_size=pool_size,
            max_overflow=pool_size,
            # Not pool_pre_ping: with asyncpg it costs three round trips per checkout (BEGIN, ";",
            # ROLLBACK), about a third of a short session. _drop_closed finds dead connections for free.
            pool_recycle=POOL_RECYCLE_SECONDS,
            connect_args={"server_settings": {"application_name": application_name}},
        )
        event.listen(self.engine.sync_engine.pool, "checkout", _drop_closed)
        self._application_name = application_name
        self._raw_pool_size = max(2, pool_size // 2)
        self._raw_pool: asyncpg.Pool | None = None
        self._raw_pool_lock = asyncio.Lock()
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        # Same pool; the connection runs without BEGIN/COMMIT while checked out (see autocommit()).
        self._autocommit = async_sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessionmaker() as session:
            try:
                yield session
            except BaseException:
                await session.rollback()
                raise
            else:
                await session.commit()

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncSession]:
        """A session whose statements each commit on their own, for work that is one statement (a
        read, or one conditional UPDATE such as a job transition): it is then the same as session()
        minus the BEGIN and COMMIT round trips. Never for several writes that must commit together."""
        async with self._autocommit() as session:
            yield session

    @asynccontextmanager
    async def raw(self) -> AsyncIterator[asyncpg.Connection]:
        """A plain asyncpg connection, for the hot paths (submit, claim, start, report): a statement
        through asyncpg costs ~30 us of CPU against ~150 us through a SQLAlchemy session, and checking
        one out of this pool ~10 us against ~150 us (figures: bench/db_paths.py). Statements
        autocommit; use `conn.transaction()` for writes that must commit together. The SQL lives in
        database/sql like every other query."""
        if self._raw_pool is None:
            self._raw_pool = await self._open_raw_pool()
        async with self._raw_pool.acquire() as conn:
            yield conn

    async def _open_raw_pool(self) -> asyncpg.Pool:
        async with self._raw_pool_lock:
            if self._raw_pool is None:
                self._raw_pool = await asyncpg.create_pool(
                    sync_url(self.url),
                    min_size=1,
                    max_size=self._raw_pool_size,
                    max_inactive_connection_lifetime=POOL_RECYCLE_SECONDS,
                    reset=_reset_cheaply,
                    server_settings={"application_name": self._application_name},
                )
            return self._raw_pool

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def dispose(self) -> None:
        if self._raw_pool is not None:
            await self._raw_pool.close()
            self._raw_pool = None
        await self.engine.dispose()


def _drop_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Refuse a pooled connection the server has closed (restart, failover, pg_terminate_backend):
    asyncpg marks it closed as soon as the socket closes, so no ping is needed. DisconnectionError
    makes the pool discard it and check out another (a fresh one if need be)."""
    if dbapi_connection.driver_connection.is_closed():
        raise exc.DisconnectionError("the server closed this pooled connection")


async def _reset_cheaply(conn: asyncpg.Connection) -> None:
    """On release, instead of asyncpg's default reset (a round trip of UNLISTEN, RESET ALL... per
    checkout): roll back only a transaction left open. Nothing else is ever left behind: LISTEN runs
    on dedicated connections, never on this pool, and no code sets session state."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")
