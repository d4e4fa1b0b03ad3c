r"""The job state machine. Every status change of a job goes through this module.

```
                 +--------------------------------------------+
                 v                                            |  lease expired / hand-off failed
 pending --> assigned --> in_progress --> completed            |  (attempts left: re-queued)
   |  |          |  |          |   |  \--> error | timeout    |
   |  |          |  |          |   +-----> cancelling --> cancelled
   |  |          |  +----------+-------------------------------+
   |  +--> cancelled | timeout (queue deadline)
   +-----> error (cannot run)
```
`assigned`: claimed by a dispatcher and being handed to an instance. `cancelling`: cancel requested
while running; the instance interrupts ComfyUI and reports, or the lease logic ends it.
A transition is one conditional UPDATE (`WHERE status = ANY(allowed sources)`), so of two actors
racing on one job exactly one wins; the loser gets `InvalidJobTransition`.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import asyncpg
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession

from comfy_cloud.errors import Conflict


class JobStatus(StrEnum):
    PENDING = "pending"
    ASSIGNED = "assigned"
    IN_PROGRESS = "in_progress"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    ERROR = "error"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.ERROR, JobStatus.TIMEOUT, JobStatus.CANCELLED})
# Statuses that hold a slot on an inference instance (and count against the user's limit).
ACTIVE_STATUSES = frozenset({JobStatus.ASSIGNED, JobStatus.IN_PROGRESS, JobStatus.CANCELLING})

ALLOWED_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset(
        {JobStatus.ASSIGNED, JobStatus.CANCELLED, JobStatus.TIMEOUT, JobStatus.ERROR}
    ),
    JobStatus.ASSIGNED: frozenset(
        {
            JobStatus.IN_PROGRESS,
            JobStatus.PENDING,
            JobStatus.CANCELLING,
            JobStatus.CANCELLED,
            JobStatus.ERROR,
            JobStatus.TIMEOUT,
        }
    ),
    JobStatus.IN_PROGRESS: frozenset(
        {
            JobStatus.COMPLETED,
            JobStatus.ERROR,
            JobStatus.TIMEOUT,
            JobStatus.CANCELLING,
            JobStatus.CANCELLED,
            JobStatus.PENDING,
        }
    ),
    JobStatus.CANCELLING: frozenset({JobStatus.CANCELLED, JobStatus.COMPLETED, JobStatus.ERROR}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.ERROR: frozenset(),
    JobStatus.TIMEOUT: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}

# What the ComfyUI jobs API (and Comfy Cloud) call each status.
API_STATUS: dict[JobStatus, str] = {
    JobStatus.PENDING: "pending",
    JobStatus.ASSIGNED: "pending",
    JobStatus.IN_PROGRESS: "in_progress",
    JobStatus.CANCELLING: "in_progress",
    JobStatus.COMPLETED: "completed",
    JobStatus.ERROR: "failed",
    JobStatus.TIMEOUT: "failed",
    JobStatus.CANCELLED: "cancelled",
}


def statuses_for_api(api_statuses: set[str]) -> set[JobStatus]:
    """Internal statuses behind a set of jobs-API statuses (for filtering)."""
    return {status for status, name in API_STATUS.items() if name in api_statuses}


def sources_of(target: JobStatus) -> frozenset[JobStatus]:
    """Every status from which `target` may be reached."""
    return frozenset(s for s, targets in ALLOWED_TRANSITIONS.items() if target in targets)


def is_allowed(source: JobStatus, target: JobStatus) -> bool:
    return target in ALLOWED_TRANSITIONS[source]


class InvalidJobTransition(Conflict):
    """The job is not in a state that allows this change."""

    def __init__(self, job_id: object, target: JobStatus, current: JobStatus | None) -> None:
        self.job_id = job_id
        self.target = target
        self.current = current
        where = f"is {current.value}" if current else "does not exist"
        super().__init__(f"job {job_id} {where}; cannot move to {target.value}")


# --- Transitions -------------------------------------------------------------------------------

# Extra assignments per target; the status, updated_at and the guard are common to all.
_ON_ENTER: dict[JobStatus, str] = {
    JobStatus.PENDING: "instance_id = NULL, lease_expires_at = NULL, assigned_at = NULL",
    JobStatus.IN_PROGRESS: "started_at = coalesce(started_at, now())",
    JobStatus.CANCELLING: "",
}
_ON_TERMINAL = "finished_at = now(), lease_expires_at = NULL, sealed_secrets = NULL"
_RETURNING = "RETURNING id, user_id, status, instance_id, attempts, max_attempts"


def _assignments(target: JobStatus, status: str, error: str) -> list[str]:
    """The SET list of a move to `target`; `status` and `error` are the parameters' placeholders."""
    sets = [f"status = {status}", "updated_at = now()", f"error = coalesce(CAST({error} AS jsonb), error)"]
    extra = _ON_TERMINAL if target in TERMINAL_STATUSES else _ON_ENTER.get(target, "")
    if extra:
        sets.append(extra)
    return sets


@functools.cache  # a handful of (target, guard) pairs: build and parse each statement once
def _transition_sql(target: JobStatus, guard_instance: bool) -> TextClause:
    guard = " AND instance_id = :instance_id" if guard_instance else ""
    return text(
        f"UPDATE jobs SET {', '.join(_assignments(target, ':target', ':error'))} "
        f"WHERE id = :job_id AND status = ANY(:sources){guard} {_RETURNING}"
    )


def allowed_sources(target: JobStatus, expected: Iterable[JobStatus] | None = None) -> list[str]:
    """The statuses a move to `target` may start from (narrowed to `expected`), as a parameter."""
    sources = sources_of(target)
    if expected is not None:
        sources = sources & frozenset(expected)
    return sorted(s.value for s in sources)


@functools.cache
def guarded_transition_sql(target: JobStatus, also_set: str = "") -> str:
    """The move to `target` of a job held by one instance, as one UPDATE for asyncpg, alone
    (guarded_transition) or inside a larger statement (the final report of a job). Parameters:
    $1 job id, $2 allowed sources (`allowed_sources`), $3 error (JSON text or NULL), $4 the instance
    that must hold the job. `also_set`: further assignments (with later parameters)."""
    sets = _assignments(target, f"'{target.value}'", "$3::text")
    if also_set:
        sets.append(also_set)
    return (
        f"UPDATE jobs SET {', '.join(sets)} "
        f"WHERE id = $1 AND status = ANY($2::text[]) AND instance_id = $4 {_RETURNING}"
    )


_CURRENT_STATUS = text("SELECT status FROM jobs WHERE id = :id")
_CURRENT_STATUS_RAW = "SELECT status FROM jobs WHERE id = $1"


async def transition(
    session: AsyncSession,
    job_id: uuid.UUID,
    target: JobStatus,
    *,
    expected: Iterable[JobStatus] | None = None,
    instance_id: uuid.UUID | None = None,
    error: dict[str, Any] | None = None,
) -> TransitionResult:
    """Move one job to `target` in a single conditional UPDATE.

    `expected` narrows the allowed sources (e.g. cancel only while pending); `instance_id` makes the
    change conditional on the job still being assigned to that instance, so a late report from an
    instance that lost its lease is refused.
    """
    sql = _transition_sql(target, instance_id is not None)
    params: dict[str, Any] = {
        "target": target.value,
        "job_id": job_id,
        "sources": allowed_sources(target, expected),
        "error": json.dumps(error) if error is not None else None,
    }
    if instance_id is not None:
        params["instance_id"] = instance_id
    row = (await session.execute(sql, params)).mappings().first()
    if row is None:
        current = await session.scalar(_CURRENT_STATUS, {"id": job_id})
        raise InvalidJobTransition(job_id, target, JobStatus(current) if current else None)
    return TransitionResult.of(row)


async def guarded_transition(
    conn: asyncpg.Connection,
    job_id: uuid.UUID,
    target: JobStatus,
    *,
    instance_id: uuid.UUID,
    expected: Iterable[JobStatus] | None = None,
    error: dict[str, Any] | None = None,
) -> TransitionResult:
    """`transition()` with an instance guard, on a plain asyncpg connection (`Database.raw()`): the
    same UPDATE at a fifth of the cost, for the transitions an inference instance makes per job."""
    error_json = json.dumps(error) if error is not None else None
    sql = guarded_transition_sql(target)
    row = await conn.fetchrow(sql, job_id, allowed_sources(target, expected), error_json, instance_id)
    if row is None:
        current = await conn.fetchval(_CURRENT_STATUS_RAW, job_id)
        raise InvalidJobTransition(job_id, target, JobStatus(current) if current else None)
    return TransitionResult.of(row)


@dataclass(frozen=True, slots=True)
class TransitionResult:
    job_id: uuid.UUID
    user_id: uuid.UUID
    status: JobStatus
    instance_id: uuid.UUID | None
    attempts: int

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> TransitionResult:
        """From a row of the transition's RETURNING list."""
        return cls(
            job_id=row["id"],
            user_id=row["user_id"],
            status=JobStatus(row["status"]),
            instance_id=row["instance_id"],
            attempts=row["attempts"],
        )
