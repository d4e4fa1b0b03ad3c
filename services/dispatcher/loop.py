"""The background tasks: scheduling passes (polled and nudged) and the reaper.

Passes run every `poll_interval` whether nudged or not, so a lost nudge (`POST /dispatch`) only delays a
job, never strands it. Nudges that arrive while a pass is claiming are served together by the next
pass. A pass's hand-offs run in their own task, so one slow instance never holds up the next pass
(its in-flight jobs already count as assigned, so the next pass cannot fill its slots twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from comfy_cloud.errors import ServiceUnavailable
from services.dispatcher.scheduler import Scheduler

log = logging.getLogger(__name__)


class DispatchLoop:
    def __init__(self, scheduler: Scheduler, poll_interval: float) -> None:
        self._scheduler = scheduler
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._waiters: list[asyncio.Future[int]] = []
        self._deliveries: set[asyncio.Task[int]] = set()
        self.passes = 0

    def nudge(self) -> None:
        self._wake.set()

    def request_pass(self) -> asyncio.Future[int]:
        """A pass that starts after this call; resolves to the number of jobs it handed out."""
        waiter: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        waiter.add_done_callback(_retrieve)  # a caller that went away must not leave an error unread
        self._waiters.append(waiter)
        self._wake.set()
        return waiter

    async def run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll_interval)
            self._wake.clear()
            waiters, self._waiters = self._waiters, []
            await self._one_pass(waiters)

    async def _one_pass(self, waiters: list[asyncio.Future[int]]) -> None:
        self.passes += 1
        try:
            assignments = await self._scheduler.claim()
        except Exception as exc:
            log.exception("scheduling pass failed")
            _fail(waiters, exc)
            return
        delivery = asyncio.get_running_loop().create_task(self._scheduler.deliver(assignments))
        self._deliveries.add(delivery)
        delivery.add_done_callback(lambda task: self._delivered(task, waiters))

    def _delivered(self, task: asyncio.Task[int], waiters: list[asyncio.Future[int]]) -> None:
        self._deliveries.discard(task)
        if task.cancelled():
            _fail(waiters, ServiceUnavailable("the dispatcher is stopping"))
        elif (exc := task.exception()) is not None:
            log.error("hand-offs failed", exc_info=exc)
            _fail(waiters, exc)
        else:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(task.result())

    async def drain(self, grace: float) -> None:
        """Let the hand-offs in flight finish (their jobs are assigned already), for `grace` seconds."""
        if self._deliveries:
            await asyncio.wait(set(self._deliveries), timeout=grace)
        for task in set(self._deliveries):
            task.cancel()


def _retrieve(waiter: asyncio.Future[int]) -> None:
    if not waiter.cancelled():
        waiter.exception()


def _fail(waiters: list[asyncio.Future[int]], exc: BaseException) -> None:
    error = exc if isinstance(exc, ServiceUnavailable) else ServiceUnavailable(f"scheduling failed: {exc}")
    for waiter in waiters:
        if not waiter.done():
            waiter.set_exception(error)


async def every(interval: float, tick: Callable[[], Awaitable[bool]], name: str) -> None:
    """Run `tick` every `interval` seconds, at once again while it returns True (more work is waiting).
    A failing tick is logged and retried at the next interval: the loop itself never dies."""
    while True:
        again = False
        try:
            again = await tick()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed", name)
        if not again:
            await asyncio.sleep(interval)
