"""Cancelling jobs and reading the queue's state."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from database.job_states import InvalidJobTransition, JobStatus, transition
from database.repositories.fleet import FleetRepository
from database.repositories.jobs import JobRepository
from database.repositories.queue_stats import QueueStatsRepository
from services.dispatcher.errors import JobNotFound
from services.dispatcher.events import StatusChange
from services.dispatcher.queue.schemas import QueueStats, WaitingForCapability
from services.dispatcher.reaper import interrupt
from services.dispatcher.state import DispatcherState

_RUNNING = frozenset({JobStatus.ASSIGNED, JobStatus.IN_PROGRESS})


@dataclass(frozen=True, slots=True)
class Cancel:
    status: JobStatus
    change: StatusChange | None = None  # None: the job was already cancelling or final
    instance_id: uuid.UUID | None = None  # where to interrupt it

    @property
    def cancelled(self) -> bool:
        """True when the job is being cancelled or this request cancelled it; False once it had ended."""
        if self.status is JobStatus.CANCELLING:
            return True
        return self.status is JobStatus.CANCELLED and self.change is not None


async def cancel_job(state: DispatcherState, job_id: uuid.UUID) -> Cancel:
    """Pending: cancelled at once. Running: `cancelling`, and its instance is told to interrupt it (the
    instance reports `cancelled`; if it never does, its heartbeats say `cancelling` and, were it gone,
    the lease expiry ends the job cancelled). Already final: nothing changes."""
    async with state.database.session() as session:
        outcome = await _cancel(session, job_id)
        address = None
        if outcome.instance_id is not None:
            addresses = await FleetRepository(session).addresses([outcome.instance_id])
            address = addresses.get(outcome.instance_id)
    if outcome.change is not None:
        await state.events.publish([outcome.change])
        when = "pending" if outcome.status is JobStatus.CANCELLED else "running"
        state.metrics.cancelled.labels(when).inc()
    if address is not None:
        await interrupt(state.inference, address, job_id, "cancel")
    return outcome


async def _cancel(session: AsyncSession, job_id: uuid.UUID) -> Cancel:
    # Each step is one conditional UPDATE; a job moving meanwhile (claimed, handed back) is tried again.
    for _ in range(3):
        try:
            done = await transition(session, job_id, JobStatus.CANCELLED, expected={JobStatus.PENDING})
            return Cancel(JobStatus.CANCELLED, StatusChange(job_id, done.user_id, JobStatus.CANCELLED))
        except InvalidJobTransition as exc:
            current = exc.current
        if current in _RUNNING:
            try:
                done = await transition(session, job_id, JobStatus.CANCELLING, expected=_RUNNING)
                change = StatusChange(job_id, done.user_id, JobStatus.CANCELLING)
                return Cancel(JobStatus.CANCELLING, change, done.instance_id)
            except InvalidJobTransition as exc:
                current = exc.current
        if current is None:
            raise JobNotFound(f"job {job_id} does not exist")
        if current is JobStatus.CANCELLING:
            job = await JobRepository(session).get_unscoped(job_id)
            return Cancel(current, None, job.instance_id if job else None)  # interrupt again: harmless
        if current is not JobStatus.PENDING:
            return Cancel(current)
    return Cancel(JobStatus.PENDING)


async def queue_stats(state: DispatcherState, limit: int = 100) -> QueueStats:
    async with state.database.session() as session:
        stats = QueueStatsRepository(session)
        depth = await stats.depth()
        waiting = await stats.waiting_for_capability(limit)
    return QueueStats(
        depth={status.value: n for status, n in depth.items()},
        waiting_for_capability=WaitingForCapability(count=waiting.total, job_ids=waiting.job_ids),
    )


async def refresh_gauges(state: DispatcherState) -> None:
    """The queue and fleet gauges, read from the database at scrape time."""
    async with state.database.session() as session:
        stats = QueueStatsRepository(session)
        depth = await stats.depth()
        waiting = await stats.waiting_for_capability(1)
        instances = await stats.instance_states()
    m = state.metrics
    for status, n in depth.items():
        m.queue_depth.labels(status.value).set(n)
    m.waiting_for_capability.set(waiting.total)
    for name in ("live", "unhealthy", "lost", "draining"):
        m.instances.labels(name).set(instances.get(name, 0))
