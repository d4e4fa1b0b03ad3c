"""Engine and session factory. One place commits: `Database.session()`.

Repositories only flush; the request dependency or task that opened the session commits on success
and rolls back on error, so a multi-step operation never half-commits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine


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
            pool_pre_ping=True,
            connect_args={"server_settings": {"application_name": application_name}},
        )
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)

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

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return True

    async def dispose(self) -> None:
        await self.engine.dispose()
