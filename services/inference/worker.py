"""The jobs this instance holds: hand-offs accepted up to capacity, each run by a JobRunner task.

The hand-off is checked against the database at once (the job must be assigned to this instance, in
the attempt the dispatcher names), so a stale or misrouted hand-off is refused rather than run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from comfy_cloud.errors import Conflict, NotFound
from database.job_states import ACTIVE_STATUSES
from database.repositories.job_runs import JobRun, load_job
from services.inference.runner import JobRunner, RunnerDeps

log = logging.getLogger(__name__)


class InstanceFull(Conflict):
    """This instance runs as many jobs as it can."""


class NotAssignedHere(Conflict):
    """The job is not assigned to this instance (or not in this attempt)."""


class JobNotHere(NotFound):
    """This instance does not run that job."""


class Worker:
    def __init__(self, deps: RunnerDeps) -> None:
        self.deps = deps
        self.capacity = deps.settings.capacity
        self.runners: dict[uuid.UUID, JobRunner] = {}
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._checking: set[uuid.UUID] = set()
        self.finished = 0

    def running_ids(self) -> list[uuid.UUID]:
        return list(self.runners)

    async def accept(self, job_id: uuid.UUID, attempt: int) -> None:
        if job_id in self.runners or job_id in self._checking:
            return  # a repeated hand-off (the dispatcher retried): already ours
        if len(self.runners) + len(self._checking) >= self.capacity:
            raise InstanceFull(f"running {len(self.runners)} of {self.capacity} jobs")
        self._checking.add(job_id)  # holds the slot while the database is asked
        try:
            job = await self._check_assignment(job_id, attempt)
        finally:
            self._checking.discard(job_id)
        # The runner starts from the row just read rather than reading it again (one query less).
        runner = JobRunner(self.deps, job_id, attempt, loaded=job)
        self.runners[job_id] = runner
        task = asyncio.get_running_loop().create_task(runner.run(), name=f"job-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._forget(job_id))
        log.info("accepted job %s (attempt %d)", job_id, attempt)

    async def _check_assignment(self, job_id: uuid.UUID, attempt: int) -> JobRun:
        async with self.deps.db.raw() as conn:  # one read
            job = await load_job(conn, job_id)
        if (
            job is None
            or job.instance_id != self.deps.settings.instance_id
            or job.status not in ACTIVE_STATUSES
            or job.attempts != attempt
        ):
            raise NotAssignedHere(f"job {job_id} attempt {attempt} is not assigned to this instance")
        return job

    def _forget(self, job_id: uuid.UUID) -> None:
        self.runners.pop(job_id, None)
        self._tasks.pop(job_id, None)
        self.finished += 1

    async def interrupt(self, job_id: uuid.UUID, reason: str) -> bool:
        runner = self.runners.get(job_id)
        if runner is None:
            raise JobNotHere(f"job {job_id} is not running here")
        log.info("interrupt requested (%s)", reason, extra={"job_id": str(job_id)})
        return await runner.interrupt(reason)

    def lost(self, job_id: uuid.UUID) -> None:
        runner = self.runners.get(job_id)
        if runner is not None:
            runner.lost()

    def comfyui_died(self) -> None:
        for runner in list(self.runners.values()):
            runner.comfyui_died()

    def status(self) -> list[dict[str, str]]:
        return [
            {"job_id": str(job_id), "phase": runner.phase.value, "attempt": str(runner.attempt)}
            for job_id, runner in self.runners.items()
        ]

    async def wait_idle(self, within: float) -> bool:
        tasks = list(self._tasks.values())
        if not tasks:
            return True
        _, pending = await asyncio.wait(tasks, timeout=within)
        return not pending

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop: jobs still preparing or running are interrupted and given back to the queue."""
        for runner in list(self.runners.values()):
            runner.stop()
        if not await self.wait_idle(grace):
            for task in self._tasks.values():
                task.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*self._tasks.values(), return_exceptions=True)
