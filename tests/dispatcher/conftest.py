"""Dispatchers (real apps on uvicorn, lifespan and background loops included) and fake instances."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from comfy_cloud.broadcast.events import JobEvent
from database.engine import Database
from services.dispatcher.app import create_app
from services.dispatcher.config import DispatcherSettings
from services.dispatcher.state import DispatcherState
from tests.database.helpers import CATALOGUE
from tests.dispatcher.fake_instance import FakeInstance, serve

# Fast loops so that tests wait for conditions, not for timers.
FAST = {
    "poll_interval": 0.05,
    "reap_interval": 0.05,
    "lease_seconds": 5.0,
    "heartbeat_interval": 0.1,
    "heartbeat_timeout": 5.0,
    "handoff_timeout": 2.0,
    "default_user_limit": 100,
}


class RecordingPublisher:
    def __init__(self) -> None:
        self.events: list[JobEvent] = []

    async def publish(self, events: Sequence[JobEvent]) -> None:
        self.events.extend(events)

    def statuses(self, job_id: uuid.UUID) -> list[str]:
        return [e.data["status"] for e in self.events if e.job_id == str(job_id)]


@dataclass
class RunningDispatcher:
    url: str
    state: DispatcherState
    publisher: RecordingPublisher
    http: httpx.AsyncClient

    async def metrics(self) -> dict[str, float]:
        """Every sample of GET /metrics, keyed `name{label="value",...}`."""
        response = await self.http.get("/metrics")
        response.raise_for_status()
        samples: dict[str, float] = {}
        for family in text_string_to_metric_families(response.text):
            for sample in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
        return samples


@dataclass
class Env:
    db: Database
    stack: contextlib.AsyncExitStack
    dispatchers: list[RunningDispatcher] = field(default_factory=list)

    async def dispatcher(self, **overrides: Any) -> RunningDispatcher:
        settings = DispatcherSettings(database_url=self.db.url, **{**FAST, **overrides})
        publisher = RecordingPublisher()
        app = create_app(settings, publisher=publisher)
        url = await self.stack.enter_async_context(serve(app, lifespan="on"))
        http = httpx.AsyncClient(base_url=url, timeout=10)
        self.stack.push_async_callback(http.aclose)
        running = RunningDispatcher(url, app.state.dispatcher, publisher, http)
        self.dispatchers.append(running)
        return running

    async def instance(
        self,
        dispatcher: RunningDispatcher,
        object_info: dict[str, Any] | None = None,
        *,
        heartbeat_every: float | None = 0.1,
        **kwargs: Any,
    ) -> FakeInstance:
        fake = FakeInstance(self.db, dispatcher.url, object_info or CATALOGUE, **kwargs)
        await fake.start()
        self.stack.push_async_callback(fake.close)
        if heartbeat_every is not None:
            fake.start_heartbeats(heartbeat_every)
        return fake


@pytest.fixture
async def env(db: Database) -> AsyncIterator[Env]:
    async with contextlib.AsyncExitStack() as stack:
        yield Env(db, stack)


async def eventually(
    condition: Callable[[], Any | Awaitable[Any]], *, within: float = 15.0, message: str = ""
) -> Any:
    """Wait until `condition()` (sync or async) is truthy; returns its value."""
    try:
        async with asyncio.timeout(within):
            while True:
                value = condition()
                if inspect.isawaitable(value):
                    value = await value
                if value:
                    return value
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"condition not met within {within}s: {message or condition}") from None


async def job_rows(db: Database, job_ids: Sequence[uuid.UUID] | None = None) -> dict[uuid.UUID, Any]:
    async with db.session() as session:
        sql = "SELECT id, user_id, status, attempts, instance_id, error FROM jobs"
        params: dict[str, Any] = {}
        if job_ids is not None:
            sql += " WHERE id = ANY(:ids)"
            params["ids"] = list(job_ids)
        return {r.id: r for r in (await session.execute(text(sql), params)).all()}


async def status_of(db: Database, job_id: uuid.UUID) -> str:
    return (await job_rows(db, [job_id]))[job_id].status
