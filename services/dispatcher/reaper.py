"""The reaper: makes every accepted job end in a final state, whatever fails.

Each tick, in one transaction: instances silent past the heartbeat timeout are marked lost and their
leases end; expired leases re-queue their jobs (or end them: error once the attempts are spent,
cancelled if they were being cancelled); running jobs past their execution deadline and pending jobs
past their queue deadline become `timeout`. After the commit: status events, interrupts for the timed
out jobs on their instances, and a scheduling nudge when jobs went back to pending. Every statement is
SKIP LOCKED and conditional, so several replicas can reap at once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from comfy_cloud.clients.inference import InferenceClient, InterruptReason
from comfy_cloud.errors import AppError
from database.engine import Database
from database.job_states import JobStatus
from database.repositories.fleet import FleetRepository
from database.repositories.queue import ExpiredLease, QueueRepository
from services.dispatcher.config import DispatcherSettings
from services.dispatcher.events import StatusChange, StatusEvents
from services.dispatcher.metrics import DispatcherMetrics

log = logging.getLogger(__name__)

BATCH = 500


@dataclass(slots=True)
class Reaped:
    lost_instances: list[uuid.UUID] = field(default_factory=list)
    expired: list[ExpiredLease] = field(default_factory=list)
    execution_timeouts: list[tuple[uuid.UUID, uuid.UUID, uuid.UUID | None]] = field(default_factory=list)
    queue_timeouts: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)
    addresses: dict[uuid.UUID, str] = field(default_factory=dict)

    @property
    def full(self) -> bool:
        """A batch came back full: more may be waiting, reap again at once."""
        return max(len(self.expired), len(self.execution_timeouts), len(self.queue_timeouts)) >= BATCH

    @property
    def requeued(self) -> bool:
        return any(e.status is JobStatus.PENDING for e in self.expired)

    def changes(self) -> list[StatusChange]:
        out = [StatusChange(e.id, e.user_id, e.status) for e in self.expired]
        out += [StatusChange(job, user, JobStatus.TIMEOUT) for job, user, _ in self.execution_timeouts]
        out += [StatusChange(job, user, JobStatus.TIMEOUT) for job, user in self.queue_timeouts]
        return out


class Reaper:
    def __init__(
        self,
        database: Database,
        settings: DispatcherSettings,
        inference: InferenceClient,
        events: StatusEvents,
        metrics: DispatcherMetrics,
        on_requeue: Callable[[], None],
    ) -> None:
        self._database = database
        self._settings = settings
        self._inference = inference
        self._events = events
        self._metrics = metrics
        self._on_requeue = on_requeue

    async def run_once(self) -> Reaped:
        reaped = await self._reap()
        self._count(reaped)
        await self._events.publish(reaped.changes())
        if reaped.requeued:
            self._on_requeue()
        await self._interrupt(reaped.execution_timeouts, reaped.addresses, "timeout")
        return reaped

    async def _reap(self) -> Reaped:
        s = self._settings
        reaped = Reaped()
        async with self._database.session() as session:
            fleet, queue = FleetRepository(session), QueueRepository(session)
            reaped.lost_instances = await fleet.mark_lost(timedelta(seconds=s.heartbeat_timeout))
            await queue.end_leases_of(reaped.lost_instances)
            reaped.expired = await queue.expire_leases(BATCH, s.max_attempts)
            reaped.execution_timeouts = await queue.execution_timeouts(BATCH)
            reaped.queue_timeouts = await queue.queue_timeouts(BATCH, s.queue_timeout)
            reaped.addresses = await fleet.addresses(i for _, _, i in reaped.execution_timeouts if i)
        return reaped

    def _count(self, reaped: Reaped) -> None:
        m = self._metrics
        for instance_id in reaped.lost_instances:
            log.warning("instance %s missed its heartbeats: marked lost", instance_id)
            m.lost_instances.inc()
        for lease in reaped.expired:
            log.warning(
                "job %s lost its lease on attempt %d: now %s",
                lease.id,
                lease.attempts,
                lease.status,
                extra={"job_id": str(lease.id)},
            )
            if lease.status is JobStatus.PENDING:
                m.retried.inc()
            elif lease.status is JobStatus.ERROR:
                m.exhausted.inc()
        m.timed_out.labels("execution").inc(len(reaped.execution_timeouts))
        m.timed_out.labels("queue").inc(len(reaped.queue_timeouts))

    async def _interrupt(
        self,
        jobs: Sequence[tuple[uuid.UUID, uuid.UUID, uuid.UUID | None]],
        addresses: dict[uuid.UUID, str],
        reason: InterruptReason,
    ) -> None:
        calls = [
            interrupt(self._inference, addresses[instance], job, reason)
            for job, _, instance in jobs
            if instance in addresses
        ]
        await asyncio.gather(*calls)


async def interrupt(
    inference: InferenceClient, address: str, job_id: uuid.UUID, reason: InterruptReason
) -> None:
    """Best effort: an instance that misses it learns at its next heartbeat that the job is no longer its
    own (or is `cancelling`), and the lease logic ends the job if the instance is gone."""
    try:
        await inference.interrupt(address, job_id, reason)
    except AppError as exc:
        log.warning(
            "could not interrupt job %s (%s) on %s: %s",
            job_id,
            reason,
            address,
            exc,
            extra={"job_id": str(job_id)},
        )
