"""One subscriber's queue: bounded, never blocks the publisher, drops only what later events replace.

Policy when a subscriber falls behind (its queue holds `max_queued` events):
1. drop the oldest queued preview (`cc.preview`): a newer preview replaces it on screen anyway;
   if none is queued and the incoming event is a preview, drop the incoming one;
2. else the same with progress updates (`progress`, `progress_state`, `cc.progress_text`), each of
   which a later one supersedes;
3. never drop anything else (status, executing, executed, execution_*, cc.job_status, unknown types):
   the queue grows past `max_queued` for those. At `hard_limit` the subscriber is hopelessly behind:
   its queue is discarded and iterating raises SubscriptionOverflow. It must re-read job state from
   the database and subscribe again, exactly as after a broadcaster reconnect.
The order of the events that are delivered is the publish order.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from types import TracebackType

from comfy_cloud.broadcast.events import PREVIEW, PROGRESS_TEXT, JobEvent
from comfy_cloud.errors import ServiceUnavailable

log = logging.getLogger(__name__)

DEFAULT_MAX_QUEUED = 1000

# Drop ranks, least valuable first.
_DROP_RANKS: dict[str, int] = {
    PREVIEW: 0,
    "progress": 1,
    "progress_state": 1,
    PROGRESS_TEXT: 1,
}
_RANKS = sorted(set(_DROP_RANKS.values()))


def drop_rank(event: JobEvent) -> int | None:
    """How expendable the event is under back-pressure (0 first); None: never dropped."""
    return _DROP_RANKS.get(event.type)


class BroadcastError(ServiceUnavailable):
    """Event broadcast is unavailable."""


class SubscriptionOverflow(BroadcastError):
    """The subscriber fell too far behind; events were lost. Re-read state and subscribe again."""


class Subscription:
    """An async iterator of the events published after it was created. Use it from one task."""

    def __init__(
        self,
        on_close: Callable[[Subscription], None],
        *,
        max_queued: int = DEFAULT_MAX_QUEUED,
        hard_limit: int | None = None,
    ) -> None:
        if max_queued < 1:
            raise ValueError("max_queued must be at least 1")
        self._on_close = on_close
        self._max_queued = max_queued
        self._hard_limit = max(hard_limit or 10 * max_queued, max_queued)
        self._queue: deque[JobEvent] = deque()
        self._rank_counts = dict.fromkeys(_RANKS, 0)
        self._wakeup = asyncio.Event()
        self._closed = False
        self._overflowed = False
        self.dropped = 0

    def __repr__(self) -> str:
        return f"<Subscription queued={len(self._queue)} dropped={self.dropped}>"

    @property
    def queued(self) -> int:
        return len(self._queue)

    # -- producer side (the broadcaster) ----------------------------------------------------------

    def offer(self, event: JobEvent) -> None:
        """Queue an event; never blocks, never raises."""
        if self._closed:
            return
        if len(self._queue) >= self._max_queued and not self._make_room(event):
            self.dropped += 1
            return
        if len(self._queue) >= self._hard_limit:
            self._overflow()
            return
        self._queue.append(event)
        rank = drop_rank(event)
        if rank is not None:
            self._rank_counts[rank] += 1
        self._wakeup.set()

    def _make_room(self, incoming: JobEvent) -> bool:
        """Drop the least valuable event among the queued ones and `incoming`. Returns False if that
        is `incoming` itself; True if room was made or the event is kept past the soft bound."""
        incoming_rank = drop_rank(incoming)
        for rank in _RANKS:
            if self._rank_counts[rank]:
                self._drop_oldest(rank)
                return True
            if incoming_rank == rank:
                return False
        return True  # nothing may be dropped: grow up to the hard limit

    def _drop_oldest(self, rank: int) -> None:
        for index, event in enumerate(self._queue):
            if drop_rank(event) == rank:
                del self._queue[index]
                self._rank_counts[rank] -= 1
                self.dropped += 1
                return

    def _overflow(self) -> None:
        log.warning(
            "a broadcast subscriber fell %d events behind; dropping its queue (%d dropped before)",
            len(self._queue),
            self.dropped,
        )
        self.dropped += len(self._queue)
        self._queue.clear()
        self._overflowed = True
        self._finish()

    def end(self) -> None:
        """The broadcaster closed: deliver what is queued, then stop iterating."""
        self._finish()

    def _finish(self) -> None:
        if not self._closed:
            self._closed = True
            self._wakeup.set()
            self._on_close(self)

    # -- consumer side ------------------------------------------------------------------------------

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> JobEvent:
        while not self._queue:
            if self._overflowed:
                raise SubscriptionOverflow()
            if self._closed:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        event = self._queue.popleft()
        rank = drop_rank(event)
        if rank is not None:
            self._rank_counts[rank] -= 1
        return event

    def close(self) -> None:
        """Unsubscribe; queued events are discarded."""
        self._queue.clear()
        self._rank_counts = dict.fromkeys(_RANKS, 0)
        self._finish()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
