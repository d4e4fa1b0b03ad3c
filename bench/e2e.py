"""What the stack adds on top of ComfyUI, measured end to end with the services as real processes.

1. Latency: submit -> `execution_success` on the WebSocket, one job at a time, through ingest and
   straight to the same ComfyUI (the simulator, zero node delay). Prints p50/p99 of both, the ratio
   and the added p50 (target: under 15 ms).
2. Throughput: jobs completed per second with N simulated workers (default 8) when many jobs are
   submitted at once (target: at least 300 jobs/s).

    .venv/bin/python bench/e2e.py [--latency-runs 200] [--jobs 1000] [--workers 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from integration.support.stack import Stack, running_stack


def prompt(color: int) -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": color},
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "bench"}},
    }


class Waiter:
    """One WebSocket; resolves a future per prompt_id when its execution_success arrives.

    Lean on purpose, so that the figures measure the stack rather than this client: aiohttp without
    permessage-deflate, and only the frames that name `execution_success` are parsed."""

    def __init__(self, ws_url: str) -> None:
        self.client_id = uuid.uuid4().hex
        self.url = f"{ws_url}?clientId={self.client_id}"
        self.pending: dict[str, asyncio.Future[float]] = {}
        self.early: dict[str, float] = {}

    async def __aenter__(self) -> Waiter:
        self.session = aiohttp.ClientSession()
        self.ws = await self.session.ws_connect(self.url, max_msg_size=0, compress=0)
        await self.ws.send_str(
            json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}})
        )
        self.task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        await self.ws.close()
        await self.session.close()

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type is not aiohttp.WSMsgType.TEXT or "execution_success" not in frame.data:
                continue
            message = json.loads(frame.data)
            if message["type"] != "execution_success":
                continue
            prompt_id = message["data"]["prompt_id"]
            future = self.pending.pop(prompt_id, None)
            if future is not None:
                future.set_result(time.perf_counter())
            else:
                self.early[prompt_id] = time.perf_counter()

    def expect(self, prompt_id: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if prompt_id in self.early:
            future.set_result(self.early.pop(prompt_id))
        else:
            self.pending[prompt_id] = future
        return future


async def one_job(http: aiohttp.ClientSession, waiter: Waiter, path: str, color: int) -> float:
    prompt_id = str(uuid.uuid4())
    started = time.perf_counter()
    async with http.post(path, json={"prompt": prompt(color), "client_id": waiter.client_id,
                                     "prompt_id": prompt_id}) as response:  # fmt: skip
        response.raise_for_status()
        await response.read()
    done = await asyncio.wait_for(waiter.expect(prompt_id), 30)
    return (done - started) * 1000


async def latencies(base: str, path: str, runs: int) -> list[float]:
    ws_url = base.replace("http://", "ws://") + "/ws"
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base, timeout=timeout) as http, Waiter(ws_url) as waiter:
        for i in range(10):  # warm connections and caches
            await one_job(http, waiter, path, 10_000 + i)
        return [await one_job(http, waiter, path, i) for i in range(runs)]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def throughput(stack: Stack, jobs: int, concurrency: int) -> tuple[float, float]:
    """(jobs/s from first submit to last execution_success, submit rate)."""
    ws_url = stack.ingest_url.replace("http://", "ws://") + "/ws"
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(stack.ingest_url, connector=connector, timeout=timeout) as http, \
            Waiter(ws_url) as waiter:  # fmt: skip
        gate = asyncio.Semaphore(concurrency)
        futures: list[asyncio.Future[float]] = []

        async def submit(i: int) -> None:
            prompt_id = str(uuid.uuid4())
            futures.append(waiter.expect(prompt_id))
            body = {"prompt": prompt(i), "prompt_id": prompt_id, "client_id": waiter.client_id}
            async with gate, http.post("/api/prompt", json=body) as response:
                response.raise_for_status()
                await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(submit(i) for i in range(jobs)))
        submitted = time.perf_counter()
        # asyncio.wait, not wait_for: a timeout must leave the late futures pending to be counted.
        _, late = await asyncio.wait(futures, timeout=120)
        if late:
            raise RuntimeError(f"{len(late)} of {jobs} jobs sent no execution_success\n{stack.logs(15)}")
        elapsed = max(future.result() for future in futures) - started
    return jobs / elapsed, jobs / (submitted - started)


async def wait_for_workers(stack: Stack, count: int) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
        for _ in range(300):
            async with http.get(f"{stack.dispatcher_url}/instances") as response:
                body = await response.json()
            instances = body["instances"] if isinstance(body, dict) else body
            if sum(1 for i in instances if i.get("status") == "live") >= count:
                return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"fewer than {count} workers registered")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=64, help="submissions in flight")
    parser.add_argument("--skip-latency", action="store_true")
    args = parser.parse_args()
    # One user submits everything here: lift the per-user limit so it measures the stack, not fairness.
    env = {"DISPATCHER_DEFAULT_USER_LIMIT": "1000", "LOG_LEVEL": "WARNING"}

    if not args.skip_latency:
        report_latency(args.latency_runs, env)
    report_throughput(args.jobs, args.workers, args.concurrency, env)


def report_latency(runs: int, env: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory(prefix="ccbench") as tmp, running_stack(Path(tmp), env=env) as stack:
        direct = asyncio.run(latencies(stack.simulator_url, "/prompt", runs))
        through = asyncio.run(latencies(stack.ingest_url, "/api/prompt", runs))
    d50, d99, t50, t99 = pct(direct, 0.5), pct(direct, 0.99), pct(through, 0.5), pct(through, 0.99)
    print(f"latency, submit -> execution_success, {runs} sequential jobs (ms)", flush=True)
    print(f"  straight to ComfyUI (simulator): p50 {d50:7.2f}  p99 {d99:7.2f}")
    print(f"  through comfy-cloud ingest:      p50 {t50:7.2f}  p99 {t99:7.2f}")
    print(f"  ratio p50 {t50 / d50:.1f}x; added p50 {t50 - d50:.2f} ms (target < 15 ms); "
          f"mean through {statistics.mean(through):.2f} ms")  # fmt: skip


def report_throughput(jobs: int, workers: int, concurrency: int, env: dict[str, str]) -> None:
    with tempfile.TemporaryDirectory(prefix="ccbench") as tmp, \
            running_stack(Path(tmp), sim_workers=workers, env=env) as stack:  # fmt: skip
        asyncio.run(wait_for_workers(stack, workers))
        rate, submit_rate = asyncio.run(throughput(stack, jobs, concurrency))
    print(f"throughput, {jobs} jobs at once, {workers} simulated workers")
    print(
        f"  {rate:.0f} jobs/s completed end to end (target >= 300); "
        f"submissions accepted at {submit_rate:.0f}/s"
    )


if __name__ == "__main__":
    main()
