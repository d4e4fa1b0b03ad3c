"""The job an inference instance runs, read in one statement on a plain asyncpg connection
(`Database.raw()`): the hand-off check and the run both start from this row (named SQL in
database/sql/job_runs.sql)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from database.job_states import JobStatus
from database.sql import load_queries

_QUERIES = load_queries("job_runs.sql")


@dataclass(frozen=True, slots=True)
class JobRun:
    id: uuid.UUID
    user_id: uuid.UUID
    status: JobStatus
    instance_id: uuid.UUID | None
    attempts: int
    max_attempts: int
    execution_deadline_at: datetime | None
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    sealed_secrets: bytes | None


async def load_job(conn: asyncpg.Connection, job_id: uuid.UUID) -> JobRun | None:
    row = await conn.fetchrow(_QUERIES["load_job"], job_id)
    if row is None:
        return None
    return JobRun(
        id=row["id"],
        user_id=row["user_id"],
        status=JobStatus(row["status"]),
        instance_id=row["instance_id"],
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        execution_deadline_at=row["execution_deadline_at"],
        prompt=json.loads(row["prompt"]),
        extra_data=json.loads(row["extra_data"] or "{}"),
        sealed_secrets=row["sealed_secrets"],
    )
