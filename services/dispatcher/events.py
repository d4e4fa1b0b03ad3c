"""`cc.job_status` events for every status change the dispatcher makes.

Events are a low-latency hint; the database holds the truth. So publishing is best effort, after the
commit, and a failed publish is logged, never raised into scheduling. The publisher is injectable: the
lifespan uses the configured broadcaster, tests pass their own.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from comfy_cloud.broadcast.events import JOB_STATUS, JobEvent
from database.job_states import JobStatus

log = logging.getLogger(__name__)


class Publisher(Protocol):
    async def publish(self, events: Sequence[JobEvent]) -> None: ...


class NullPublisher:
    """Publishes nothing (a dispatcher run without a broadcaster)."""

    async def publish(self, events: Sequence[JobEvent]) -> None:
        return None


@dataclass(frozen=True, slots=True)
class StatusChange:
    job_id: uuid.UUID
    user_id: uuid.UUID
    status: JobStatus

    def event(self) -> JobEvent:
        return JobEvent(
            user_id=str(self.user_id),
            job_id=str(self.job_id),
            type=JOB_STATUS,
            data={"status": self.status.value},
        )


class StatusEvents:
    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    async def publish(self, changes: Iterable[StatusChange]) -> None:
        events = [change.event() for change in changes]
        if not events:
            return
        try:
            await self.publisher.publish(events)
        except Exception:
            log.warning("could not publish %d job status event(s)", len(events), exc_info=True)
