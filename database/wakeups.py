"""The dispatcher's wake-up call: PostgreSQL notifies DISPATCH_CHANNEL on commit whenever a job becomes
pending or leaves an active status (a trigger on `jobs`, migration 0002), i.e. whenever a scheduling
pass may find work. Cheaper and sooner than an HTTP nudge from whoever changed the job (the commit
itself is the signal). The dispatcher's poll stays the safety net: a notification lost while the
listening connection is down only delays a job, and every reconnect wakes the dispatcher once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import asyncpg

from database.engine import sync_url

log = logging.getLogger(__name__)

DISPATCH_CHANNEL = "cc_dispatch"
RECONNECT_SECONDS = 2.0


async def listen_for_wakeups(database_url: str, wake: Callable[[], None]) -> None:
    """Call `wake()` on every notification, forever; reconnects after losing the connection."""
    while True:
        try:
            await _listen_until_closed(database_url, wake)
        except Exception as exc:  # never let the listener die: log, wait, listen again
            log.warning("dispatch wake-ups interrupted (the poll covers): %r", exc)
        await asyncio.sleep(RECONNECT_SECONDS)


async def _listen_until_closed(database_url: str, wake: Callable[[], None]) -> None:
    conn = await asyncpg.connect(sync_url(database_url))
    closed = asyncio.Event()
    try:
        conn.add_termination_listener(lambda _conn: closed.set())
        await conn.add_listener(DISPATCH_CHANNEL, lambda *_args: wake())
        wake()  # work may have arrived while nobody listened
        await closed.wait()
        log.warning("lost the dispatch wake-up connection: listening again")
    finally:
        await _close(conn)


async def _close(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 2.0)
    except Exception:
        conn.terminate()
