"""`cc.job_status` events for every status change the dispatcher makes.

Events are a low-latency hint; the database holds the truth. So publishing is best effort, after the
commit, and a failed publish is logged, never raised into scheduling. The publisher is injectable: the
lifespan uses the configured broadcaster, tests pass their own.
"""

from __future__ import annotations

import asyncio
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
    """Publishes in call order: a `publish` waits for the `publish_soon` calls made before it."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self._latest: asyncio.Task[None] | None = None  # the last publish_soon, chained to its elders

    def publish_soon(self, changes: Iterable[StatusChange]) -> None:
        """Publish without waiting for it (e.g. "assigned" while the hand-off is already under way)."""
        events = [change.event() for change in changes]
        if events:
            self._latest = asyncio.get_running_loop().create_task(self._send_after(self._latest, events))

    async def publish(self, changes: Iterable[StatusChange]) -> None:
        events = [change.event() for change in changes]
        if events:
            await self._send_after(self._latest, events)

    async def _send_after(self, earlier: asyncio.Task[None] | None, events: list[JobEvent]) -> None:
        if earlier is not None and not earlier.done():
            await asyncio.wait([earlier])  # its failure is its own (logged there)
        try:
            await self.publisher.publish(events)
        except Exception:
            log.warning("could not publish %d job status event(s)", len(events), exc_info=True)
