"""Everything the lifespan opens, in one typed object (`request.app.state.dispatcher`)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from comfy_cloud.clients.inference import InferenceClient
from database.engine import Database
from database.wakeups import listen_for_wakeups
from services.dispatcher.config import DispatcherSettings
from services.dispatcher.events import StatusEvents
from services.dispatcher.loop import DispatchLoop, every
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.reaper import Reaper
from services.dispatcher.runs import RunTracker
from services.dispatcher.scheduler import Scheduler


@dataclass
class DispatcherState:
    settings: DispatcherSettings
    database: Database
    inference: InferenceClient
    events: StatusEvents
    metrics: DispatcherMetrics
    runs: RunTracker
    scheduler: Scheduler
    loop: DispatchLoop
    reaper: Reaper
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        settings: DispatcherSettings,
        database: Database,
        inference: InferenceClient,
        events: StatusEvents,
    ) -> DispatcherState:
        metrics = DispatcherMetrics()
        runs = RunTracker(database, metrics)
        scheduler = Scheduler(database, settings, inference, events, metrics, runs)
        loop = DispatchLoop(scheduler, settings.poll_interval)
        reaper = Reaper(database, settings, inference, events, metrics, on_requeue=loop.nudge)
        return cls(settings, database, inference, events, metrics, runs, scheduler, loop, reaper)

    def start(self) -> None:
        create = asyncio.get_running_loop().create_task
        self.tasks = [
            create(self.loop.run(), name="dispatch-loop"),
            create(every(self.settings.reap_interval, self._reap, "reaper"), name="reaper"),
            # Commits that make work (a job pending, a slot freed) wake the loop through PostgreSQL.
            create(listen_for_wakeups(self.settings.database_url, self.loop.nudge), name="wake-ups"),
        ]
        self.loop.nudge()  # work may be waiting since before this replica started

    async def _reap(self) -> bool:
        reaped = await self.reaper.run_once()
        await self.runs.observe_finished()
        return reaped.full

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.loop.drain(grace=self.settings.handoff_timeout)

    def running(self) -> bool:
        return bool(self.tasks) and not any(task.done() for task in self.tasks)


def get_state(request: Request) -> DispatcherState:
    return request.app.state.dispatcher  # type: ignore[no-any-return]


async def _state(request: Request) -> DispatcherState:
    # async on purpose: FastAPI runs a plain `def` dependency in a worker thread, a thread hop on
    # every request (every nudge) for what is an attribute lookup.
    return get_state(request)


State = Annotated[DispatcherState, Depends(_state)]
