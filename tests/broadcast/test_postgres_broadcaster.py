"""PostgresBroadcaster against a real PostgreSQL: order, fan-out, by-reference payloads, reconnects."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from comfy_cloud.broadcast import BroadcastError, PostgresBroadcaster, Subscription
from comfy_cloud.broadcast.events import JOB_STATUS, PREVIEW, JobEvent
from comfy_cloud.broadcast.postgres import LISTENER_APPLICATION_NAME, MAX_INLINE_BYTES
from database.repositories import broadcast as repo


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


async def payload_ids(database_url: str) -> set[int]:
    conn = await asyncpg.connect(database_url)
    try:
        return {row["id"] for row in await conn.fetch("SELECT id FROM broadcast_payloads")}
    finally:
        await conn.close()


@pytest.fixture
async def make_broadcaster(database_url: str, channel: str) -> AsyncIterator[Any]:
    started: list[PostgresBroadcaster] = []

    async def make(**kwargs: Any) -> PostgresBroadcaster:
        broadcaster = PostgresBroadcaster(database_url, channel=channel, **kwargs)
        await broadcaster.start()
        started.append(broadcaster)
        return broadcaster

    yield make
    for broadcaster in started:
        await broadcaster.close()


def event(seq: int, *, job: str = "job-1", type: str = "progress", blob: bytes | None = None) -> JobEvent:
    return JobEvent(
        user_id="user-1", job_id=job, type=type, data={"value": seq, "max": 1000}, blob=blob, seq=seq
    )


async def test_1000_events_keep_their_order_across_a_by_reference_event(
    make_broadcaster: Any, database_url: str
) -> None:
    # Two broadcasters: a producer process and a consumer process.
    producer = await make_broadcaster()
    consumer = await make_broadcaster()
    subscription = consumer.subscribe()
    heard: list[int] = []
    consumer.listen(lambda e: heard.append(e.seq))
    before = await payload_ids(database_url)

    big = os.urandom(50_000)
    events = [event(i, type=PREVIEW, blob=big) if i == 500 else event(i) for i in range(1000)]
    events[-1] = event(999, type="executing")
    # Batches of several sizes, the big one inside a batch, awaited one after another.
    await producer.publish(events[:1])
    await producer.publish(events[1:450])
    await producer.publish(events[450:520])
    for i in range(520, 600):
        await producer.publish([events[i]])
    await producer.publish(events[600:])

    received = await collect(subscription, 1000)
    assert [e.seq for e in received] == list(range(1000))
    assert received[500].type == PREVIEW and received[500].blob == big
    assert received == events
    assert heard == list(range(1000))  # a listener gets the same sequence
    # Exactly the one big event went through the table.
    assert len(await payload_ids(database_url) - before) == 1


async def test_identical_events_in_one_publish_are_all_delivered(make_broadcaster: Any) -> None:
    # PostgreSQL folds identical NOTIFY payloads of one transaction into one; the broadcaster must not.
    broadcaster = await make_broadcaster()
    subscription = broadcaster.subscribe()
    same = JobEvent(user_id="u", job_id="j", type=JOB_STATUS, data={"status": "in_progress"})
    await broadcaster.publish([same, same, same])
    assert await collect(subscription, 3) == [same, same, same]


async def test_every_subscriber_gets_everything(make_broadcaster: Any) -> None:
    producer = await make_broadcaster()
    other = await make_broadcaster()
    subscriptions = [producer.subscribe(), producer.subscribe(), other.subscribe()]
    events = [event(i, job=f"job-{i % 3}") for i in range(200)]
    await producer.publish(events)
    results = await asyncio.gather(*(collect(s, 200) for s in subscriptions))
    for received in results:
        assert received == events


async def test_events_published_before_subscribe_are_not_delivered(make_broadcaster: Any) -> None:
    broadcaster = await make_broadcaster()
    early = broadcaster.subscribe()
    await broadcaster.publish([event(1)])
    await collect(early, 1)  # delivered to the early subscriber, so it has passed through
    late = broadcaster.subscribe()
    await broadcaster.publish([event(2)])
    assert [e.seq for e in await collect(late, 1)] == [2]


async def test_large_payload_goes_by_reference(make_broadcaster: Any, database_url: str) -> None:
    producer = await make_broadcaster()
    consumer = await make_broadcaster()
    subscription = consumer.subscribe()

    def preview(size: int) -> JobEvent:
        return JobEvent(user_id="u", job_id="j", type=PREVIEW, data={"node_id": "9"}, blob=os.urandom(size))

    near_limit = preview(5_600)  # ~7,600 bytes of JSON: inline
    over_limit = preview(6_000)  # ~8,100 bytes: by reference
    large = preview(200_000)
    assert len(near_limit.to_json()) < MAX_INLINE_BYTES - 20 < MAX_INLINE_BYTES < len(over_limit.to_json())
    before = await payload_ids(database_url)
    await producer.publish([near_limit])
    assert await collect(subscription, 1) == [near_limit]
    assert await payload_ids(database_url) == before  # inline
    await producer.publish([over_limit, large])
    assert await collect(subscription, 2) == [over_limit, large]
    assert len(await payload_ids(database_url) - before) == 2


async def test_cleanup_deletes_old_payloads(make_broadcaster: Any, database_url: str) -> None:
    broadcaster = await make_broadcaster(cleanup_interval=0.1, payload_ttl=timedelta(minutes=10))
    subscription = broadcaster.subscribe()
    await broadcaster.publish([event(1, type=PREVIEW, blob=os.urandom(20_000))])
    await collect(subscription, 1)
    new = await payload_ids(database_url)
    assert new
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE broadcast_payloads SET created_at = now() - interval '11 minutes' "
            "WHERE id = ANY($1::bigint[])",
            list(new),
        )
        remaining = "SELECT count(*) FROM broadcast_payloads WHERE id = ANY($1::bigint[])"
        async with asyncio.timeout(10):
            while await conn.fetchval(remaining, list(new)):
                await asyncio.sleep(0.05)
    finally:
        await conn.close()


async def test_listener_reconnects_after_its_backend_is_terminated(
    make_broadcaster: Any, database_url: str
) -> None:
    """Events published after the reconnect arrive. Events published during the gap are lost: PostgreSQL
    keeps no notifications for a session that is not listening; consumers re-read state from the database."""
    producer = await make_broadcaster()
    consumer = await make_broadcaster(keepalive_interval=0.2)
    subscription = consumer.subscribe()
    old_pid = consumer.listener_pid
    assert old_pid is not None

    conn = await asyncpg.connect(database_url)
    try:
        assert old_pid in await repo.backend_pids(conn, LISTENER_APPLICATION_NAME)
        assert await repo.terminate_backend(conn, old_pid)
    finally:
        await conn.close()

    await wait_until(lambda: consumer.listener_pid not in (None, old_pid) and consumer.ready)
    await producer.publish([event(1), event(2)])
    assert [e.seq for e in await collect(subscription, 2)] == [1, 2]


@pytest.mark.skipif(bool(os.environ.get("TEST_DATABASE_URL")), reason="stops a local server process")
async def test_keepalive_notices_a_connection_that_stopped_answering(make_broadcaster: Any) -> None:
    consumer = await make_broadcaster(keepalive_interval=0.1, keepalive_timeout=0.3)
    producer = await make_broadcaster()
    subscription = consumer.subscribe()
    old_pid = consumer.listener_pid
    assert old_pid is not None
    # A frozen server process: the socket stays open but nothing answers, as on a half-open
    # connection (a NAT or a peer that vanished); only the keepalive query can notice.
    os.kill(old_pid, signal.SIGSTOP)
    try:
        await wait_until(lambda: consumer.listener_pid not in (None, old_pid) and consumer.ready)
    finally:
        os.kill(old_pid, signal.SIGCONT)
    await producer.publish([event(7)])
    assert [e.seq for e in await collect(subscription, 1)] == [7]


async def test_slow_subscriber_does_not_block_a_fast_one(make_broadcaster: Any) -> None:
    producer = await make_broadcaster()
    consumer = await make_broadcaster()
    slow = consumer.subscribe(max_queued=50)  # not read while the events are published
    fast = consumer.subscribe(max_queued=10_000)
    events: list[JobEvent] = []
    for i in range(600):
        events.append(
            event(i, type="executing" if i % 3 == 0 else PREVIEW, blob=None if i % 3 == 0 else b"p")
        )
    for start in range(0, 600, 60):
        await producer.publish(events[start : start + 60])

    assert await collect(fast, 600) == events
    # The slow one kept every non-preview event, in order, and at most max_queued of the newest
    # previews; its queue stayed bounded.
    kept = await collect(slow, slow.queued, within=1)
    assert [e for e in kept if e.type == "executing"] == [e for e in events if e.type == "executing"]
    assert [e.seq for e in kept] == sorted(e.seq for e in kept)
    previews = [e for e in kept if e.type == PREVIEW]
    assert len(previews) <= 50
    assert slow.dropped == 600 - len(kept)


async def test_publish_needs_a_started_broadcaster(database_url: str) -> None:
    broadcaster = PostgresBroadcaster(database_url)
    with pytest.raises(BroadcastError):
        await broadcaster.publish([event(1)])


async def test_start_fails_clearly_without_a_database() -> None:
    broadcaster = PostgresBroadcaster("postgresql://postgres@127.0.0.1:9/postgres", connect_timeout=2)
    with pytest.raises(BroadcastError):
        await broadcaster.start()
    assert not broadcaster.ready


async def test_publish_to_receive_latency(make_broadcaster: Any) -> None:
    """Prints the publish -> receive latency (another broadcaster receives, as another process would)."""
    producer = await make_broadcaster()
    consumer = await make_broadcaster()
    subscription = consumer.subscribe()
    for label, blob in (("small event", None), ("200 KB preview (by reference)", os.urandom(200_000))):
        samples = []
        for i in range(50):
            sent = time.perf_counter()
            await producer.publish([event(i, type=PREVIEW if blob else "progress", blob=blob)])
            await collect(subscription, 1)
            samples.append((time.perf_counter() - sent) * 1000)
        samples.sort()
        print(
            f"\npostgres {label}: p50 {statistics.median(samples):.2f} ms, "
            f"p95 {samples[int(len(samples) * 0.95) - 1]:.2f} ms, max {samples[-1]:.2f} ms"
        )
