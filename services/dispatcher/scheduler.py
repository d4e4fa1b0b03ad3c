"""One scheduling pass: claim pending jobs for the free slots of the fleet, then hand them over HTTP.

Claim (`claim`): one statement (`dispatch_pass`, cc_dispatch_pass() in the database) locks the free
instances it will fill (SKIP LOCKED, so concurrent replicas fill disjoint instances and never overfill
one), claims jobs per node catalogue in batches (fair, limit-aware, SKIP LOCKED) and commits before any
hand-off: the instance loads the job from the database, so the assignment must be visible first. One
round trip on a raw asyncpg connection (`Database.raw()`): every job end brings a pass, and every
job's start waits for one.

Deliver (`deliver`): hand-offs run concurrently, outside any transaction. A hand-off that certainly did
not reach the instance (refused, unreachable, any answer but 202) puts the job back to pending *without*
spending an attempt (`return_unstarted`): no ComfyUI saw it, and counting it would let a flapping
instance fail a job that never ran. A hand-off whose fate is unknown (sent, no answer) is left alone:
if the instance has the job its heartbeat keeps the lease alive, otherwise the lease expires and the
attempt counts, as for any job whose worker vanished. Either way the instance gets no more work until
its next heartbeat reports it healthy, so a broken instance cannot make passes spin.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from comfy_cloud.clients.errors import NoAnswer, Unreachable, UpstreamRejected
from comfy_cloud.clients.inference import InferenceClient, InstanceFull
from database.engine import Database
from database.job_states import InvalidJobTransition, JobStatus, transition
from database.repositories.fleet import FleetRepository
from database.repositories.queue import Assignment, ClaimedJob, QueueRepository, dispatch_pass
from services.dispatcher.config import DispatcherSettings
from services.dispatcher.events import StatusChange, StatusEvents
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.runs import RunTracker

log = logging.getLogger(__name__)


class HandOff(StrEnum):
    ACCEPTED = "accepted"
    FULL = "full"
    UNREACHABLE = "unreachable"
    REJECTED = "rejected"
    NO_ANSWER = "no_answer"


class Scheduler:
    def __init__(
        self,
        database: Database,
        settings: DispatcherSettings,
        inference: InferenceClient,
        events: StatusEvents,
        metrics: DispatcherMetrics,
        runs: RunTracker,
    ) -> None:
        self._database = database
        self._settings = settings
        self._inference = inference
        self._events = events
        self._metrics = metrics
        self._runs = runs
        # One claim at a time per replica: a second one would only skip the first one's locks.
        self._claiming = asyncio.Lock()
        self._handoffs = asyncio.Semaphore(settings.handoff_concurrency)

    async def run_pass(self) -> int:
        """Claim and deliver; how many jobs instances accepted."""
        return await self.deliver(await self.claim())

    async def claim(self) -> list[Assignment]:
        s = self._settings
        async with self._claiming:
            with self._metrics.pass_seconds.time():
                async with self._database.raw() as conn:
                    assignments = await dispatch_pass(
                        conn,
                        default_user_limit=s.default_user_limit,
                        lease_seconds=s.lease_seconds,
                        execution_timeout=s.execution_timeout,
                        batch=s.claim_batch,
                    )
        # Not awaited: hand-offs need not wait for a hint to the owners' sockets. A take-back's "pending"
        # still goes out after it (StatusEvents keeps the order).
        self._events.publish_soon(
            StatusChange(a.job.id, a.job.user_id, JobStatus.ASSIGNED) for a in assignments
        )
        return assignments

    async def deliver(self, assignments: Sequence[Assignment]) -> int:
        if not assignments:
            return 0
        results = await asyncio.gather(*(self._hand_off(a) for a in assignments))
        failed = [(a, r) for a, r in zip(assignments, results, strict=True) if r is not HandOff.ACCEPTED]
        if failed:
            await self._settle(failed)
        return len(assignments) - len(failed)

    async def _hand_off(self, assignment: Assignment) -> HandOff:
        job = assignment.job
        async with self._handoffs:
            result = await self._call_instance(assignment)
        if result is HandOff.ACCEPTED:
            self._metrics.dispatched.inc()
            self._runs.track(job.id, job.attempts)
            if job.attempts == 1 and job.created_at and job.assigned_at:
                self._metrics.submit_to_start.observe((job.assigned_at - job.created_at).total_seconds())
        else:
            self._metrics.handoff_failures.labels(result.value).inc()
        return result

    async def _call_instance(self, assignment: Assignment) -> HandOff:
        job = assignment.job
        try:
            await self._inference.hand_off(assignment.address, job.id, job.attempts)
        except InstanceFull:
            result = HandOff.FULL
        except Unreachable as exc:
            log.warning("hand-off of job %s failed: %s", job.id, exc, extra={"job_id": str(job.id)})
            result = HandOff.UNREACHABLE
        except UpstreamRejected as exc:
            log.warning("hand-off of job %s refused: %s", job.id, exc, extra={"job_id": str(job.id)})
            result = HandOff.REJECTED
        except NoAnswer as exc:
            log.warning(
                "hand-off of job %s unanswered (the lease decides): %s",
                job.id,
                exc,
                extra={"job_id": str(job.id)},
            )
            result = HandOff.NO_ANSWER
        else:
            result = HandOff.ACCEPTED
        return result

    async def _settle(self, failed: Sequence[tuple[Assignment, HandOff]]) -> None:
        changes: list[StatusChange] = []
        async with self._database.session() as session:
            queue = QueueRepository(session)
            for assignment, result in failed:
                if result is not HandOff.NO_ANSWER:
                    change = await self._take_back(session, queue, assignment.job)
                    if change is not None:
                        changes.append(change)
            await FleetRepository(session).mark_unhealthy({a.job.instance_id for a, _ in failed})
        await self._events.publish(changes)

    async def _take_back(
        self, session: AsyncSession, queue: QueueRepository, job: ClaimedJob
    ) -> StatusChange | None:
        user_id = await queue.return_unstarted(job.id, job.instance_id, job.attempts)
        if user_id is not None:
            return StatusChange(job.id, user_id, JobStatus.PENDING)
        # Cancelled during the hand-off: the instance never had it, so the cancel is complete.
        try:
            done = await transition(
                session,
                job.id,
                JobStatus.CANCELLED,
                expected={JobStatus.CANCELLING},
                instance_id=job.instance_id,
            )
        except InvalidJobTransition:
            return None
        return StatusChange(job.id, done.user_id, JobStatus.CANCELLED)
