"""Fan-out inside one process: tests and single-process runs (`comfy-cloud up` with every service in
one process). Publishing delivers synchronously to the queues of this process's subscribers."""

from __future__ import annotations

from collections.abc import Sequence

from comfy_cloud.broadcast.base import Broadcaster
from comfy_cloud.broadcast.events import JobEvent
from comfy_cloud.broadcast.subscription import DEFAULT_MAX_QUEUED, BroadcastError


class InProcessBroadcaster(Broadcaster):
    def __init__(self, *, max_queued: int = DEFAULT_MAX_QUEUED, hard_limit: int | None = None) -> None:
        super().__init__(max_queued=max_queued, hard_limit=hard_limit)
        self._closed = False

    async def start(self) -> None:
        self._closed = False
        self._set_ready(True)

    async def close(self) -> None:
        self._closed = True
        self._set_ready(False)
        self._end_subscriptions()

    async def publish(self, events: Sequence[JobEvent]) -> None:
        # Usable before start(): nothing to connect to.
        if self._closed:
            raise BroadcastError("the broadcaster is closed")
        for event in events:
            self._deliver(event)
