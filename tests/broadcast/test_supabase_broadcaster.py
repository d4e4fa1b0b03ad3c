"""SupabaseBroadcaster through the real `supabase` client against a local Realtime server."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from comfy_cloud.broadcast import BroadcastError, Subscription, SupabaseBroadcaster
from comfy_cloud.broadcast.events import PREVIEW, JobEvent
from integration.support.fake_realtime import FakeRealtime

KEY = "test-service-role-key"
# The realtime client reads ConnectionClosed.code, which websockets deprecated.
pytestmark = pytest.mark.filterwarnings("ignore:ConnectionClosed:DeprecationWarning")


async def collect(subscription: Subscription, count: int, within: float = 20.0) -> list[JobEvent]:
    events: list[JobEvent] = []
    async with asyncio.timeout(within):
        async for event in subscription:
            events.append(event)
            if len(events) == count:
                break
    return events


async def wait_until(condition: Callable[[], bool], within: float = 15.0) -> None:
    """Poll state that has no event to wait on (a reconnect seen from outside)."""
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.01)


def event(
    seq: int, *, type: str = "progress", blob: bytes | None = None, data: dict[str, Any] | None = None
) -> JobEvent:
    return JobEvent(
        user_id="user-1", job_id="job-1", type=type, data=data or {"value": seq}, blob=blob, seq=seq
    )


@pytest.fixture
async def fake() -> AsyncIterator[FakeRealtime]:
    async with FakeRealtime(api_key=KEY) as server:
        yield server


@pytest.fixture
async def make_broadcaster(fake: FakeRealtime) -> AsyncIterator[Any]:
    started: list[SupabaseBroadcaster] = []

    async def make(**kwargs: Any) -> SupabaseBroadcaster:
        broadcaster = SupabaseBroadcaster(fake.url, KEY, "test_events", timeout=5, **kwargs)
        await broadcaster.start()
        started.append(broadcaster)
        return broadcaster

    yield make
    for broadcaster in started:
        await broadcaster.close()


async def test_round_trip_in_order_with_a_chunked_event(make_broadcaster: Any, fake: FakeRealtime) -> None:
    producer = await make_broadcaster()
    consumer = await make_broadcaster()
    own, other, other2 = producer.subscribe(), consumer.subscribe(), consumer.subscribe()

    # A 1 MB `executed` (many outputs) is over the 256 KB limit of the server: it is chunked.
    big = event(100, type="executed", data={"output": {"text": ["x" * 1000 + '"quoted"'] * 1000}})
    preview = event(101, type=PREVIEW, blob=os.urandom(100_000))
    events = [event(i) for i in range(100)] + [big, preview] + [event(i) for i in range(102, 200)]
    await producer.publish(events[:50])
    await producer.publish(events[50:150])
    await producer.publish(events[150:])

    for subscription in (own, other, other2):
        assert await collect(subscription, 200) == events
    assert fake.stats.refused == 0
    assert fake.stats.largest_payload <= 200_000
    assert fake.stats.broadcasts > 200  # the big event took several messages


async def test_oversized_messages_are_refused_and_reported(fake: FakeRealtime) -> None:
    # Configured above the server's limit: the server's error reply surfaces as BroadcastError.
    broadcaster = SupabaseBroadcaster(fake.url, KEY, timeout=5, max_message_bytes=1_000_000)
    await broadcaster.start()
    try:
        with pytest.raises(BroadcastError):
            await broadcaster.publish([event(1, type=PREVIEW, blob=os.urandom(400_000))])
        await broadcaster.publish([event(2)])  # the channel still works
    finally:
        await broadcaster.close()


async def test_a_wrong_key_fails_to_start(fake: FakeRealtime) -> None:
    broadcaster = SupabaseBroadcaster(fake.url, "wrong-key", timeout=2)
    with pytest.raises(BroadcastError):
        await broadcaster.start()
    assert not broadcaster.ready


async def test_reconnects_after_the_server_drops_the_socket(
    make_broadcaster: Any, fake: FakeRealtime
) -> None:
    producer = await make_broadcaster()
    consumer = await make_broadcaster()
    subscription = consumer.subscribe()
    await producer.publish([event(1)])
    assert [e.seq for e in await collect(subscription, 1)] == [1]
    joins = fake.stats.joins

    await fake.drop_connections()
    # Both clients reconnect and rejoin by themselves.
    await wait_until(lambda: fake.stats.joins >= joins + 2 and producer.ready and consumer.ready)
    await producer.publish([event(2), event(3)])
    assert [e.seq for e in await collect(subscription, 2)] == [2, 3]


async def test_publish_to_receive_latency(make_broadcaster: Any) -> None:
    producer = await make_broadcaster()
    consumer = await make_broadcaster()
    subscription = consumer.subscribe()
    for label, blob in (("small event", None), ("200 KB preview (chunked)", os.urandom(200_000))):
        samples = []
        for i in range(30):
            sent = time.perf_counter()
            await producer.publish([event(i, type=PREVIEW if blob else "progress", blob=blob)])
            await collect(subscription, 1)
            samples.append((time.perf_counter() - sent) * 1000)
        samples.sort()
        p50, worst = statistics.median(samples), samples[-1]
        print(f"\nsupabase (local fake server) {label}: p50 {p50:.2f} ms, max {worst:.2f} ms")
