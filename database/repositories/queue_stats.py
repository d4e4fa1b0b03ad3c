"""Read-only views of the dispatch queue for the dispatcher's `/queue` and `/metrics`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from database.job_states import JobStatus
from database.sql import load_queries

# text() once per query, not per call (it parses the SQL for bind parameters each time).
QUERIES = {name: text(sql) for name, sql in load_queries("queue_stats.sql").items()}


@dataclass(frozen=True, slots=True)
class Waiting:
    """Pending jobs no live instance can run: how many, and the oldest few."""

    total: int
    job_ids: list[uuid.UUID]


@dataclass(frozen=True, slots=True)
class Run:
    id: uuid.UUID
    status: JobStatus
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None


class QueueStatsRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def depth(self) -> dict[JobStatus, int]:
        """Number of jobs in each non-final status (zero included)."""
        counts = {status: 0 for status in (JobStatus.PENDING, JobStatus.ASSIGNED, JobStatus.IN_PROGRESS)}
        counts[JobStatus.CANCELLING] = 0
        for row in await self.session.execute(QUERIES["queue_depth"]):
            counts[JobStatus(row.status)] = row.n
        return counts

    async def waiting_for_capability(self, limit: int = 100) -> Waiting:
        rows = (await self.session.execute(QUERIES["waiting_for_capability"], {"limit": limit})).all()
        return Waiting(total=rows[0].total if rows else 0, job_ids=[r.id for r in rows])

    async def runs(self, job_ids: Sequence[uuid.UUID]) -> list[Run]:
        if not job_ids:
            return []
        rows = await self.session.execute(QUERIES["runs"], {"ids": list(job_ids)})
        return [Run(r.id, JobStatus(r.status), r.attempts, r.started_at, r.finished_at) for r in rows]

    async def instance_states(self) -> dict[str, int]:
        """Instances per state: live, unhealthy (live, not taking work), lost, draining."""
        rows = await self.session.execute(QUERIES["instance_states"])
        return {r.state: r.n for r in rows}
