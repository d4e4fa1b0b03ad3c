"""Jobs as their owner sees them: creation, lookup, queue and history listings. Every query is
scoped to one user; a job of another user is indistinguishable from a missing one."""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import asyncpg
from sqlalchemy import Select, and_, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from comfy_cloud.errors import Conflict
from database.job_states import ACTIVE_STATUSES, TERMINAL_STATUSES, JobStatus
from database.models import History, Job
from database.repositories.broadcast import Notification
from database.sql import load_queries


class DuplicateJob(Conflict):
    """A job with this prompt_id already exists."""


@dataclass(slots=True)
class NewJob:
    id: uuid.UUID
    user_id: uuid.UUID
    prompt: dict[str, Any]
    extra_data: dict[str, Any] = field(default_factory=dict)
    sealed_secrets: bytes | None = None
    client_id: str | None = None
    outputs_to_execute: list[str] = field(default_factory=list)
    required_nodes: list[str] = field(default_factory=list)
    runnable_on: list[str] = field(default_factory=list)
    workflow_id: str | None = None
    number: float | None = None  # None: the next queue number
    priority: int = 0
    max_attempts: int = 3
    queue_deadline_at: datetime | None = None


@dataclass(slots=True)
class JobFilter:
    statuses: set[JobStatus] | None = None
    workflow_id: str | None = None
    output_types: set[str] | None = None
    sort_by: Literal["create_time", "execution_duration"] = "create_time"
    sort_order: Literal["asc", "desc"] = "desc"
    offset: int = 0
    limit: int | None = None


@dataclass(slots=True)
class JobWithHistory:
    job: Job
    history: History | None


# Statements of the hot paths (every prompt, every `status` message), built once with bind
# parameters: building an ORM statement and its cache key costs about as much as executing it.
_NEW_JOB_COLUMNS = (
    "id", "user_id", "status", "priority", "prompt", "extra_data", "sealed_secrets", "client_id",
    "outputs_to_execute", "required_nodes", "runnable_on", "workflow_id", "max_attempts", "queue_deadline_at",
)  # fmt: skip


def _create_statement(number: Any) -> Any:
    values = {k: bindparam(k) for k in _NEW_JOB_COLUMNS}
    stmt = insert(Job).values(**values, number=number)
    return stmt.on_conflict_do_nothing(index_elements=["id"]).returning(Job)


# By the given number, or the next queue number.
_CREATE = {
    True: _create_statement(bindparam("number")),
    False: _create_statement(text("nextval('job_number_seq')")),
}
_QUEUED_STATUSES = sorted([JobStatus.PENDING.value, *(s.value for s in ACTIVE_STATUSES)])
_QUEUE_REMAINING = select(func.count()).where(
    Job.user_id == bindparam("user_id"), Job.status.in_(_QUEUED_STATUSES)
)


# Through Database.raw() (asyncpg): ingest runs these for every prompt and every `status` message.
_RAW = load_queries("jobs.sql")


@dataclass(frozen=True, slots=True)
class Submission:
    """What submit_job() found: the live catalogues now, and the new job's number if it was inserted."""

    live: frozenset[str]
    current: bool  # the live catalogues were the expected ones (else nothing was inserted)
    number: float | None


async def submit_job(
    conn: asyncpg.Connection,
    new: NewJob,
    *,
    front: bool,
    expected_live: Collection[str] | None,
    notify: Notification | None = None,
) -> Submission:
    """Insert a pending job with its `runnable_on` (every registered catalogue that offers all of
    `new.required_nodes`; `new.runnable_on` is ignored), in one statement that commits by itself.
    Nothing is inserted unless the live catalogues are exactly `expected_live` (those the prompt was
    validated against; None: whatever they are), in which case `current` is false. A repeated id
    (whoever owns it) raises DuplicateJob. `front`: the next number negated, as ComfyUI's front.
    `notify` is sent by the same statement if, and only if, the job was inserted."""
    row = await conn.fetchrow(
        _RAW["submit_job"],
        new.id,
        new.user_id,
        JobStatus.PENDING.value,
        new.priority,
        new.number,
        json.dumps(new.prompt),
        json.dumps(new.extra_data),
        new.sealed_secrets,
        new.client_id,
        json.dumps(new.outputs_to_execute),
        new.workflow_id,
        new.required_nodes,
        new.max_attempts,
        new.queue_deadline_at,
        front,
        None if expected_live is None else sorted(expected_live),
        None if notify is None else notify.channel,
        None if notify is None else notify.payloads,
    )
    submission = Submission(frozenset(row["live"]), row["current"], row["number"])
    if submission.current and submission.number is None:
        raise DuplicateJob(f"prompt_id {new.id} was already submitted")
    return submission


async def count_queue_remaining(conn: asyncpg.Connection, user_id: uuid.UUID) -> int:
    """JobRepository.queue_remaining() on a raw connection."""
    return int(await conn.fetchval(_RAW["queue_remaining"], user_id))


class JobRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def create(self, new: NewJob) -> Job:
        """Insert a pending job; a repeated id (whoever owns it) raises DuplicateJob, never runs twice."""
        params = {
            "id": new.id,
            "user_id": new.user_id,
            "status": JobStatus.PENDING.value,
            "priority": new.priority,
            "prompt": new.prompt,
            "extra_data": new.extra_data,
            "sealed_secrets": new.sealed_secrets,
            "client_id": new.client_id,
            "outputs_to_execute": new.outputs_to_execute,
            "required_nodes": new.required_nodes,
            "runnable_on": new.runnable_on,
            "workflow_id": new.workflow_id,
            "max_attempts": new.max_attempts,
            "queue_deadline_at": new.queue_deadline_at,
        }
        if new.number is not None:
            params["number"] = new.number
        job = await self.session.scalar(_CREATE[new.number is not None], params)
        if job is None:
            raise DuplicateJob(f"prompt_id {new.id} was already submitted")
        return job

    async def next_number(self) -> int:
        """Take the next queue number (ComfyUI's counter), e.g. to queue a job in front as -number."""
        return int(await self.session.scalar(text("SELECT nextval('job_number_seq')")))

    async def get(
        self, user_id: uuid.UUID, job_id: uuid.UUID, *, include_deleted: bool = False
    ) -> Job | None:
        stmt = select(Job).where(Job.id == job_id, Job.user_id == user_id)
        if not include_deleted:
            stmt = stmt.where(Job.deleted_at.is_(None))
        return await self.session.scalar(stmt)

    async def get_with_history(self, user_id: uuid.UUID, job_id: uuid.UUID) -> JobWithHistory | None:
        stmt = (
            select(Job, History)
            .outerjoin(History, History.job_id == Job.id)
            .where(Job.id == job_id, Job.user_id == user_id, Job.deleted_at.is_(None))
        )
        row = (await self.session.execute(stmt)).first()
        return JobWithHistory(row[0], row[1]) if row else None

    async def get_unscoped(self, job_id: uuid.UUID) -> Job | None:
        """For the services that act on behalf of the system (dispatcher, inference), not users."""
        return await self.session.get(Job, job_id)

    async def list(self, user_id: uuid.UUID, filt: JobFilter) -> tuple[list[JobWithHistory], int]:
        """One page of the user's jobs (filter, then sort, then offset/limit) and the filtered total."""
        base = self._filtered(user_id, filt)
        total = await self.session.scalar(select(func.count()).select_from(base.subquery()))
        duration = func.coalesce(Job.finished_at - Job.started_at, text("interval '0'"))
        key = Job.created_at if filt.sort_by == "create_time" else duration
        order = key.asc() if filt.sort_order == "asc" else key.desc()
        stmt = (
            base.add_columns(History)
            .outerjoin(History, History.job_id == Job.id)
            .order_by(order, Job.number.desc() if filt.sort_order == "desc" else Job.number.asc())
            .offset(filt.offset)
        )
        if filt.limit is not None:
            stmt = stmt.limit(filt.limit)
        rows = (await self.session.execute(stmt)).all()
        return [JobWithHistory(r[0], r[1]) for r in rows], total or 0

    def _filtered(self, user_id: uuid.UUID, filt: JobFilter) -> Select[tuple[Job]]:
        stmt = select(Job).where(Job.user_id == user_id, Job.deleted_at.is_(None))
        if filt.statuses is not None:
            stmt = stmt.where(Job.status.in_([s.value for s in filt.statuses]))
        if filt.workflow_id is not None:
            stmt = stmt.where(Job.workflow_id == filt.workflow_id)
        if filt.output_types:
            stmt = stmt.where(Job.output_types.overlap(sorted(filt.output_types)))
        return stmt

    async def queue(self, user_id: uuid.UUID) -> tuple[list[Job], list[Job]]:
        """The user's (running, pending) jobs, each in queue order."""
        stmt = (
            select(Job)
            .where(
                Job.user_id == user_id,
                Job.status.in_([JobStatus.PENDING.value, *(s.value for s in ACTIVE_STATUSES)]),
            )
            .order_by(Job.priority.desc(), Job.number, Job.created_at)
        )
        jobs = list(await self.session.scalars(stmt))
        running = [j for j in jobs if j.status != JobStatus.PENDING]
        pending = [j for j in jobs if j.status == JobStatus.PENDING]
        return running, pending

    async def queue_remaining(self, user_id: uuid.UUID) -> int:
        """Running plus pending jobs of the user (ComfyUI's `queue_remaining`)."""
        return await self.session.scalar(_QUEUE_REMAINING, {"user_id": user_id}) or 0

    async def history_page(
        self, user_id: uuid.UUID, *, max_items: int | None, offset: int | None
    ) -> list[JobWithHistory]:
        """Finished jobs, oldest first, paged the way ComfyUI pages GET /history."""
        finished = and_(
            Job.user_id == user_id,
            Job.deleted_at.is_(None),
            Job.status.in_([s.value for s in TERMINAL_STATUSES]),
        )
        if offset is None and max_items is not None:
            # Only max_items: the last N entries (ComfyUI: offset = len - N).
            count = await self.session.scalar(select(func.count()).where(finished)) or 0
            offset = max(0, count - max_items)
        stmt = (
            select(Job, History)
            .outerjoin(History, History.job_id == Job.id)
            .where(finished)
            .order_by(Job.finished_at, Job.number)
            .offset(offset or 0)
        )
        if max_items is not None:
            stmt = stmt.limit(max_items)
        return [JobWithHistory(r[0], r[1]) for r in (await self.session.execute(stmt)).all()]

    async def hide_from_history(self, user_id: uuid.UUID, job_ids: Sequence[uuid.UUID] | None) -> int:
        """POST /history {delete|clear}: hide finished jobs (all of them when job_ids is None)."""
        stmt = update(Job).where(
            Job.user_id == user_id,
            Job.deleted_at.is_(None),
            Job.status.in_([s.value for s in TERMINAL_STATUSES]),
        )
        if job_ids is not None:
            stmt = stmt.where(Job.id.in_(list(job_ids)))
        result = await self.session.execute(stmt.values(deleted_at=func.now()))
        return result.rowcount  # type: ignore[attr-defined]

    async def pending_ids(self, user_id: uuid.UUID, job_ids: Sequence[uuid.UUID] | None) -> list[uuid.UUID]:
        """The user's pending jobs among job_ids (all pending ones when None)."""
        stmt = select(Job.id).where(Job.user_id == user_id, Job.status == JobStatus.PENDING.value)
        if job_ids is not None:
            stmt = stmt.where(Job.id.in_(list(job_ids)))
        return list(await self.session.scalars(stmt))

    async def active_ids(self, user_id: uuid.UUID) -> list[uuid.UUID]:
        stmt = select(Job.id).where(
            Job.user_id == user_id, Job.status.in_([s.value for s in ACTIVE_STATUSES])
        )
        return list(await self.session.scalars(stmt))
