"""Execution time of the jobs this replica handed out, observed when they end.

Jobs end on their instance (inference writes the final status), so the dispatcher learns of it by
looking: each reaper tick reads the jobs it is tracking by primary key. Each run is tracked only by the
replica that handed it out, so summing replicas counts every run once. A replica restart forgets its
runs (they go unobserved); that is the price of keeping no state in the database for a metric.
"""

from __future__ import annotations

import uuid

from database.engine import Database
from database.job_states import TERMINAL_STATUSES, JobStatus
from database.repositories.queue_stats import QueueStatsRepository
from services.dispatcher.metrics import DispatcherMetrics

_MAX_TRACKED = 100_000


class RunTracker:
    def __init__(self, database: Database, metrics: DispatcherMetrics) -> None:
        self._database = database
        self._metrics = metrics
        self._runs: dict[uuid.UUID, int] = {}  # job -> attempt handed out (insertion order = age)

    def track(self, job_id: uuid.UUID, attempt: int) -> None:
        if len(self._runs) >= _MAX_TRACKED:
            self._runs.pop(next(iter(self._runs)))
        self._runs[job_id] = attempt

    @property
    def tracked(self) -> int:
        return len(self._runs)

    async def observe_finished(self) -> None:
        asked = list(self._runs)
        if not asked:
            return
        async with self._database.session() as session:
            runs = await QueueStatsRepository(session).runs(asked)
        seen = set()
        for run in runs:
            seen.add(run.id)
            attempt = self._runs.get(run.id)
            if run.attempts != attempt or run.status is JobStatus.PENDING:
                self._runs.pop(run.id, None)  # re-queued: its next hand-off is tracked anew
            elif run.status in TERMINAL_STATUSES:
                self._runs.pop(run.id, None)
                if run.started_at is not None and run.finished_at is not None:
                    seconds = (run.finished_at - run.started_at).total_seconds()
                    self._metrics.execution.labels(run.status.value).observe(max(seconds, 0.0))
        for job_id in set(asked) - seen:
            self._runs.pop(job_id, None)  # deleted meanwhile
