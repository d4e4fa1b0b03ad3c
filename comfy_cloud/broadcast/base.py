"""The broadcaster interface: job events from producers (inference, dispatcher) to every ingest replica.

Guarantees, for every backend:
* `subscribe()` registers at once: the subscription sees every event published after it returned,
  while the backend is connected (`ready`). Events published while a backend reconnects are lost;
  a consumer that sees `ready` go false must re-read job state from the database (which is the truth;
  events are only a low-latency hint of it), exactly as a freshly connected socket does.
* Events passed to one `publish()` call are delivered in that order; so are the events of successive,
  awaited `publish()` calls of one task. Publish the events of one job from one task.
* Every subscriber of every process receives every event, including those its own process published.
* A slow subscriber never blocks the publisher nor other subscribers (see `subscription.py` for what
  is dropped). Treat delivered events as read-only: subscribers share the objects.

`listen(callback)` is the cheaper way in for a consumer that never waits (ingest's WebSocket hub, which
only queues frames on its sockets): the callback runs for each event as the backend receives it, in
the same order, with no queue and no task switch in between (each costs a few microseconds per event,
and a job makes some twenty events). It must return quickly and not raise.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from types import TracebackType

from comfy_cloud.broadcast.events import JobEvent
from comfy_cloud.broadcast.subscription import DEFAULT_MAX_QUEUED, Subscription

log = logging.getLogger(__name__)

Listener = Callable[[JobEvent], None]


class Broadcaster(ABC):
    def __init__(self, *, max_queued: int = DEFAULT_MAX_QUEUED, hard_limit: int | None = None) -> None:
        self._max_queued = max_queued
        self._hard_limit = hard_limit
        self._subscriptions: set[Subscription] = set()
        self._listeners: list[Listener] = []
        self._ready = False
        self._ready_changed = asyncio.Event()

    @abstractmethod
    async def start(self) -> None:
        """Connect; returns once subscriptions receive events (raises BroadcastError otherwise)."""

    @abstractmethod
    async def close(self) -> None:
        """Disconnect; every subscription ends after its queued events."""

    @abstractmethod
    async def publish(self, events: Sequence[JobEvent]) -> None:
        """Publish events in order. Raises BroadcastError if the backend did not take them."""

    @property
    def ready(self) -> bool:
        """Connected and receiving: a readiness probe reports this."""
        return self._ready

    async def wait_ready(self) -> None:
        """Return once `ready` (e.g. after a reconnect); bound it with `asyncio.timeout`."""
        while not self._ready:
            self._ready_changed.clear()
            await self._ready_changed.wait()

    def subscribe(self, *, max_queued: int | None = None, hard_limit: int | None = None) -> Subscription:
        """Register a subscriber now; the bounds default to the broadcaster's (see subscription.py)."""
        subscription = Subscription(
            self._subscriptions.discard,
            max_queued=max_queued or self._max_queued,
            hard_limit=hard_limit or self._hard_limit,
        )
        self._subscriptions.add(subscription)
        return subscription

    def listen(self, callback: Listener) -> Callable[[], None]:
        """Call `callback` with every event received from now on (see the module); returns the
        function that stops it."""
        self._listeners.append(callback)

        def stop() -> None:
            if callback in self._listeners:
                self._listeners.remove(callback)

        return stop

    @property
    def subscriber_count(self) -> int:
        return len(self._subscriptions)

    def _set_ready(self, ready: bool) -> None:
        if ready != self._ready:
            self._ready = ready
            self._ready_changed.set()

    def _deliver(self, event: JobEvent) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("a broadcast listener failed on a %s event", event.type)
        for subscription in list(self._subscriptions):
            subscription.offer(event)

    def _end_subscriptions(self) -> None:
        for subscription in list(self._subscriptions):
            subscription.end()
        self._subscriptions.clear()

    async def __aenter__(self) -> Broadcaster:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
