"""The dispatch queue: claiming, leases and deadlines (named SQL in database/sql/queue.sql).

These are the set-based status changes; each pair below is checked against the state machine's table
at import, so the queue cannot move a job along an edge that `database.job_states` forbids.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from database.job_states import JobStatus as S
from database.job_states import is_allowed
from database.sql import load_queries

_NAMED_PARAMETER = re.compile(r"(?<![:\w]):(\w+)")


@dataclass(frozen=True, slots=True)
class RawQuery:
    """A named query in asyncpg's form (`$1`, `$2`...), for `Database.raw()` connections."""

    sql: str
    names: tuple[str, ...]

    @classmethod
    def of(cls, sql: str) -> RawQuery:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        return cls(_NAMED_PARAMETER.sub(number, sql), tuple(names))

    def args(self, params: dict[str, object]) -> list[object]:
        return [params[name] for name in self.names]


_SOURCES = load_queries("queue.sql")
# text() once per query, not per call (it parses the SQL for bind parameters each time).
QUERIES = {name: text(sql) for name, sql in _SOURCES.items()}
RAW_CLAIM = RawQuery.of(_SOURCES["claim_jobs"])
RAW_DISPATCH_PASS = RawQuery.of(_SOURCES["dispatch_pass"])

QUEUE_EDGES = {
    "claim_jobs": [(S.PENDING, S.ASSIGNED)],
    "expire_leases": [
        (S.ASSIGNED, S.PENDING),
        (S.IN_PROGRESS, S.PENDING),
        (S.ASSIGNED, S.ERROR),
        (S.IN_PROGRESS, S.ERROR),
        (S.CANCELLING, S.CANCELLED),
    ],
    "execution_timeouts": [(S.ASSIGNED, S.TIMEOUT), (S.IN_PROGRESS, S.TIMEOUT)],
    "queue_timeouts": [(S.PENDING, S.TIMEOUT)],
    "return_unstarted": [(S.ASSIGNED, S.PENDING)],
}
for _name, _edges in QUEUE_EDGES.items():
    for _source, _target in _edges:
        assert is_allowed(_source, _target), f"{_name}: {_source} -> {_target} is not a legal transition"


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: uuid.UUID
    user_id: uuid.UUID
    instance_id: uuid.UUID
    attempts: int
    created_at: datetime | None = None
    assigned_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ExpiredLease:
    id: uuid.UUID
    user_id: uuid.UUID
    status: S
    lost_instance_id: uuid.UUID | None
    attempts: int


def _claim_params(
    catalogue: str,
    slots: Sequence[uuid.UUID],
    default_user_limit: int,
    lease_seconds: float,
    execution_timeout: float,
) -> dict[str, object]:
    return {
        "catalogue": catalogue,
        "slots": list(slots),
        "default_limit": default_user_limit,
        "lease_seconds": float(lease_seconds),
        "execution_timeout": float(execution_timeout),
    }


async def claim_jobs(
    conn: asyncpg.Connection,
    *,
    catalogue: str,
    slots: Sequence[uuid.UUID],
    default_user_limit: int,
    lease_seconds: float,
    execution_timeout: float,
) -> list[ClaimedJob]:
    """Claim and assign up to len(slots) jobs; `slots` lists one instance id per free slot, whose
    instances the caller's transaction has locked (dispatch_pass does all of it in one statement)."""
    if not slots:
        return []
    params = _claim_params(catalogue, slots, default_user_limit, lease_seconds, execution_timeout)
    rows = await conn.fetch(RAW_CLAIM.sql, *RAW_CLAIM.args(params))
    return [_claimed(r) for r in rows]


def _claimed(row: asyncpg.Record) -> ClaimedJob:
    return ClaimedJob(
        row["id"], row["user_id"], row["instance_id"], row["attempts"], row["created_at"], row["assigned_at"]
    )


@dataclass(frozen=True, slots=True)
class Assignment:
    job: ClaimedJob
    address: str  # of the instance the job is assigned to


async def dispatch_pass(
    conn: asyncpg.Connection,
    *,
    default_user_limit: int,
    lease_seconds: float,
    execution_timeout: float,
    batch: int,
) -> list[Assignment]:
    """One scheduling pass in one statement (see `dispatch_pass` in queue.sql): the jobs it claimed for
    the free slots of the fleet, each with its instance's address. Committed when it returns, unless the
    connection is in a transaction (whose end then releases the instance locks)."""
    params = {
        "default_limit": default_user_limit,
        "lease_seconds": float(lease_seconds),
        "execution_timeout": float(execution_timeout),
        "batch": batch,
    }
    rows = await conn.fetch(RAW_DISPATCH_PASS.sql, *RAW_DISPATCH_PASS.args(params))
    return [Assignment(_claimed(r), r["address"]) for r in rows]


class QueueRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def renew_leases(
        self, instance_id: uuid.UUID, job_ids: Sequence[uuid.UUID], lease_seconds: float
    ) -> dict[uuid.UUID, S]:
        """Renew; returns the status of each job the instance still holds (others are lost to it)."""
        rows = await self.session.execute(
            QUERIES["renew_leases"],
            {"instance_id": instance_id, "job_ids": list(job_ids), "lease_seconds": lease_seconds},
        )
        return {r.id: S(r.status) for r in rows}

    async def expire_leases(self, batch: int = 500, max_attempts: int | None = None) -> list[ExpiredLease]:
        """`max_attempts` caps each job's own limit (None: the job's limit alone)."""
        rows = await self.session.execute(
            QUERIES["expire_leases"], {"batch": batch, "max_attempts": max_attempts}
        )
        return [ExpiredLease(r.id, r.user_id, S(r.status), r.lost_instance_id, r.attempts) for r in rows]

    async def end_leases_of(self, instance_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        """End the leases of every job the given (lost) instances hold; expire_leases does the rest."""
        if not instance_ids:
            return []
        rows = await self.session.execute(QUERIES["end_leases_of"], {"instance_ids": list(instance_ids)})
        return [r.id for r in rows]

    async def return_unstarted(
        self, job_id: uuid.UUID, instance_id: uuid.UUID, attempt: int
    ) -> uuid.UUID | None:
        """Undo a claim whose hand-off never reached the instance; the owner's id, or None when the
        job has moved on since (cancelled, or claimed again)."""
        row = (
            await self.session.execute(
                QUERIES["return_unstarted"],
                {"job_id": job_id, "instance_id": instance_id, "attempt": attempt},
            )
        ).first()
        return row.user_id if row else None

    async def has_pending(self) -> bool:
        return bool(await self.session.scalar(QUERIES["has_pending"]))

    async def execution_timeouts(
        self, batch: int = 500
    ) -> list[tuple[uuid.UUID, uuid.UUID, uuid.UUID | None]]:
        """(job, user, instance) of each running job that passed its deadline, now set to timeout."""
        rows = await self.session.execute(QUERIES["execution_timeouts"], {"batch": batch})
        return [(r.id, r.user_id, r.instance_id) for r in rows]

    async def queue_timeouts(
        self, batch: int = 500, max_wait: float | None = None
    ) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """(job, user) of each pending job past its queue deadline or waiting longer than `max_wait`
        seconds since submission, now set to timeout."""
        rows = await self.session.execute(QUERIES["queue_timeouts"], {"batch": batch, "max_wait": max_wait})
        return [(r.id, r.user_id) for r in rows]
