"""The subscriber queue policy and the in-process broadcaster (no database needed)."""

from __future__ import annotations

import asyncio

import pytest

from comfy_cloud.broadcast import (
    BroadcastError,
    InProcessBroadcaster,
    PostgresBroadcaster,
    SubscriptionOverflow,
    SupabaseBroadcaster,
    open_broadcaster,
)
from comfy_cloud.broadcast.events import JOB_STATUS, PREVIEW, PROGRESS_TEXT, JobEvent


def ev(seq: int, type: str) -> JobEvent:
    return JobEvent(user_id="u", job_id="j", type=type, seq=seq)


def drain(subscription) -> list[JobEvent]:  # type: ignore[no-untyped-def]
    events = []
    while subscription.queued:
        events.append(subscription._queue[0])
        subscription._queue.popleft()
    return events


async def take(subscription, count: int) -> list[JobEvent]:  # type: ignore[no-untyped-def]
    return [await anext(subscription) for _ in range(count)]


async def test_fan_out_and_subscribe_registers_immediately() -> None:
    broadcaster = InProcessBroadcaster()
    await broadcaster.start()
    assert broadcaster.ready
    await broadcaster.publish([ev(0, "status")])  # before anyone subscribed: nobody gets it
    first, second = broadcaster.subscribe(), broadcaster.subscribe()
    events = [ev(i, "executing") for i in range(1, 6)]
    await broadcaster.publish(events)
    assert await take(first, 5) == events
    assert await take(second, 5) == events
    await broadcaster.close()
    assert not broadcaster.ready
    assert [e async for e in first] == []  # ends after close
    with pytest.raises(BroadcastError):
        await broadcaster.publish(events)


async def test_listeners_get_every_event_in_order_as_it_is_published() -> None:
    broadcaster = InProcessBroadcaster()
    await broadcaster.start()
    seen: list[int] = []

    def failing(event: JobEvent) -> None:
        raise RuntimeError("a broken listener must not stop the others")

    stop_failing = broadcaster.listen(failing)
    stop = broadcaster.listen(lambda event: seen.append(event.seq))
    subscription = broadcaster.subscribe()
    await broadcaster.publish([ev(1, "executing"), ev(2, "executed")])
    assert seen == [1, 2]  # synchronously: no queue in between
    assert [e.seq for e in await take(subscription, 2)] == [1, 2]
    stop()
    stop_failing()
    await broadcaster.publish([ev(3, "executing")])
    assert seen == [1, 2]
    await broadcaster.close()


async def test_close_delivers_what_is_queued_then_ends() -> None:
    broadcaster = InProcessBroadcaster()
    await broadcaster.start()
    subscription = broadcaster.subscribe()
    await broadcaster.publish([ev(1, "executing"), ev(2, "executed")])
    await broadcaster.close()
    assert [e.seq async for e in subscription] == [1, 2]


async def test_unsubscribing_stops_delivery() -> None:
    broadcaster = InProcessBroadcaster()
    await broadcaster.start()
    async with broadcaster.subscribe() as subscription:
        await broadcaster.publish([ev(1, "executing")])
        assert broadcaster.subscriber_count == 1
    assert broadcaster.subscriber_count == 0
    await broadcaster.publish([ev(2, "executing")])
    assert subscription.queued == 0


async def test_a_waiting_subscriber_wakes_up() -> None:
    broadcaster = InProcessBroadcaster()
    await broadcaster.start()
    subscription = broadcaster.subscribe()
    waiter = asyncio.create_task(anext(subscription))
    await asyncio.sleep(0)
    assert not waiter.done()
    await broadcaster.publish([ev(1, "executing")])
    assert (await asyncio.wait_for(waiter, 1)).seq == 1


async def test_oldest_previews_are_dropped_first() -> None:
    broadcaster = InProcessBroadcaster(max_queued=4)
    subscription = broadcaster.subscribe()
    await broadcaster.publish(
        [
            ev(1, PREVIEW),
            ev(2, "executing"),
            ev(3, PREVIEW),
            ev(4, "progress"),
            ev(5, PREVIEW),
            ev(6, PREVIEW),
        ]
    )
    # 5 arrives: preview 1 goes; 6 arrives: preview 3 goes.
    assert [e.seq for e in drain(subscription)] == [2, 4, 5, 6]
    assert subscription.dropped == 2


async def test_progress_goes_after_previews_and_status_never() -> None:
    broadcaster = InProcessBroadcaster(max_queued=3)
    subscription = broadcaster.subscribe()
    await broadcaster.publish([ev(1, "progress"), ev(2, JOB_STATUS), ev(3, PROGRESS_TEXT)])
    await broadcaster.publish([ev(4, PREVIEW)])  # no older preview: the incoming one is dropped
    await broadcaster.publish([ev(5, "execution_success")])  # the oldest progress makes room
    # 6 pushes out the last progress text; 7 finds nothing droppable and grows past the soft bound.
    await broadcaster.publish([ev(6, "status"), ev(7, "executing")])
    assert [e.seq for e in drain(subscription)] == [2, 5, 6, 7]
    assert subscription.dropped == 3


async def test_a_hopelessly_slow_subscriber_overflows_loudly() -> None:
    broadcaster = InProcessBroadcaster(max_queued=2, hard_limit=5)
    slow = broadcaster.subscribe()
    fast = broadcaster.subscribe(max_queued=100)
    await broadcaster.publish([ev(i, "executing") for i in range(6)])
    with pytest.raises(SubscriptionOverflow):
        await anext(slow)
    assert broadcaster.subscriber_count == 1  # the overflowed one is gone
    assert [e.seq for e in await take(fast, 6)] == list(range(6))


async def test_a_slow_subscriber_never_blocks_the_publisher() -> None:
    broadcaster = InProcessBroadcaster(max_queued=10)
    broadcaster.subscribe()  # never read
    async with asyncio.timeout(2):
        for i in range(10_000):
            await broadcaster.publish([ev(i, PREVIEW)])


def test_open_broadcaster(monkeypatch: pytest.MonkeyPatch) -> None:
    db = "postgresql://postgres@localhost/app"
    assert isinstance(open_broadcaster(None, db), PostgresBroadcaster)
    assert isinstance(open_broadcaster("postgres", db), PostgresBroadcaster)
    assert isinstance(open_broadcaster("postgresql://u@other/db", db), PostgresBroadcaster)
    assert isinstance(open_broadcaster("memory", db), InProcessBroadcaster)

    env = {"SUPABASE_URL": "https://abc.supabase.co", "SUPABASE_KEY": "k"}
    hosted = open_broadcaster("supabase", db, env=env)
    assert isinstance(hosted, SupabaseBroadcaster)
    assert (hosted._url, hosted._key, hosted._channel_name) == (
        "https://abc.supabase.co",
        "k",
        "comfy_cloud_events",
    )
    assert hosted._private
    by_ref = open_broadcaster("supabase://abcdefgh?channel=prod_events&private=false", db, env=env)
    assert (by_ref._url, by_ref._channel_name) == ("https://abcdefgh.supabase.co", "prod_events")  # type: ignore[attr-defined]
    assert not by_ref._private  # type: ignore[attr-defined]
    self_hosted = open_broadcaster("supabase://realtime.example.com:8443", db, env=env)
    assert self_hosted._url == "https://realtime.example.com:8443"  # type: ignore[attr-defined]
    local = open_broadcaster("http://127.0.0.1:54321", db, env=env)
    assert local._url == "http://127.0.0.1:54321"  # type: ignore[attr-defined]

    for bad, environment in [
        ("supabase", {"SUPABASE_KEY": "k"}),  # no SUPABASE_URL
        ("https://abc.supabase.co", {}),  # no key
        ("kafka://broker", env),
        ("supabase://abc?channel=bad name", env),
        ("supabase://abc?key=secret", env),
        ("supabase://abc?private=maybe", env),
    ]:
        with pytest.raises(ValueError):
            open_broadcaster(bad, db, env=environment)
