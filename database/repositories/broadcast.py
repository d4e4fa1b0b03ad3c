"""Queries of the PostgreSQL broadcaster (comfy_cloud.broadcast.postgres).

Unlike the other repositories these take a raw asyncpg connection: the broadcaster runs outside the
SQLAlchemy pool (a dedicated LISTEN connection and a small asyncpg pool), so that event traffic never
waits behind, nor holds, the connections of API requests. The caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import asyncpg

_INSERT_PAYLOAD = "INSERT INTO broadcast_payloads (payload) VALUES ($1) RETURNING id"
_FETCH_PAYLOADS = "SELECT id, payload FROM broadcast_payloads WHERE id = ANY($1::bigint[])"
_DELETE_OLD = "DELETE FROM broadcast_payloads WHERE created_at < now() - $1::interval"
_NOTIFY = "SELECT pg_notify($1, $2)"
# One statement for a whole batch: its own transaction, so the notifications go out on its commit, all
# or none. unnest() is a function scan that yields the array in order and pg_notify() runs once per row
# as it comes, so PostgreSQL queues (and delivers) them in the array's order.
_NOTIFY_ALL = "SELECT count(pg_notify($1, payload)) FROM unnest($2::text[]) AS payload"
_LISTENER_PIDS = "SELECT pid FROM pg_stat_activity WHERE application_name = $1"
_TERMINATE = "SELECT pg_terminate_backend($1)"


@dataclass(frozen=True, slots=True)
class Notification:
    """NOTIFY payloads that a statement sends itself with pg_notify(), committed with what it writes
    (see PostgresBroadcaster.inline_notification)."""

    channel: str
    payloads: list[str]


async def insert_payload(conn: asyncpg.Connection, payload: bytes) -> int:
    """Store an event too large for a NOTIFY; the notification then carries the returned id."""
    return int(await conn.fetchval(_INSERT_PAYLOAD, payload))


async def notify(conn: asyncpg.Connection, channel: str, payloads: Sequence[str]) -> None:
    """Queue one NOTIFY per payload, in order. Inside a transaction they are delivered on commit, in
    this order, and all or none."""
    if payloads:
        # executemany pipelines the statements: one round trip for many events.
        await conn.executemany(_NOTIFY, [(channel, payload) for payload in payloads])


async def notify_now(conn: asyncpg.Connection, channel: str, payloads: Sequence[str]) -> None:
    """Send the notifications in order, in one round trip; the caller must not be in a transaction
    (the statement is its own, committed at once)."""
    if payloads:
        await conn.fetchval(_NOTIFY_ALL, channel, list(payloads))


async def fetch_payloads(conn: asyncpg.Connection, ids: Sequence[int]) -> dict[int, bytes]:
    rows = await conn.fetch(_FETCH_PAYLOADS, list(ids))
    return {int(row["id"]): bytes(row["payload"]) for row in rows}


async def delete_payloads_older_than(conn: asyncpg.Connection, age: timedelta) -> int:
    status = await conn.execute(_DELETE_OLD, age)
    return int(status.rsplit(" ", 1)[-1])


async def backend_pids(conn: asyncpg.Connection, application_name: str) -> list[int]:
    """Server processes of the connections with this application_name (diagnostics, tests)."""
    return [int(row["pid"]) for row in await conn.fetch(_LISTENER_PIDS, application_name)]


async def terminate_backend(conn: asyncpg.Connection, pid: int) -> bool:
    return bool(await conn.fetchval(_TERMINATE, pid))
