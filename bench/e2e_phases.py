"""Where one job's time goes: per-phase p50 from the database's timestamps, jobs run one at a time.

Phases (each job submitted only after the previous one's `execution_success` reached the socket):
  post                  POST /api/prompt until its answer (client clock)
  created->assigned     jobs.created_at to jobs.assigned_at (ingest's insert to the dispatcher's claim)
  assigned->started     to jobs.started_at (hand-off, load, submit to ComfyUI, its first message)
  started->finished     to jobs.finished_at (execution, output fetch and storage, the final report)
  finished->ws success  jobs.finished_at to `execution_success` on the client's /ws
  first event           submit to the first frame of this prompt on the /ws (its type is printed)
  total                 submit to `execution_success` on the /ws

Database timestamps are `now()`, i.e. the start of the transaction that wrote them, and the client
clock is compared with the database's (same machine). Run:

    .venv/bin/python bench/e2e_phases.py [--jobs 40] [--warmup 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.e2e import prompt
from database.engine import sync_url
from integration.support.stack import Stack, running_stack

PHASES = ("post", "created->assigned", "assigned->started", "started->finished", "finished->ws success",
          "first event", "total")  # fmt: skip


async def run(stack: Stack, jobs: int, warmup: int) -> None:
    client_id = uuid.uuid4().hex
    ws_url = stack.ingest_url.replace("http://", "ws://") + f"/ws?clientId={client_id}"
    rows = []
    async with aiohttp.ClientSession(stack.ingest_url, timeout=aiohttp.ClientTimeout(total=30)) as http, \
            http.ws_connect(ws_url, max_msg_size=0, compress=0) as ws:  # fmt: skip
        await ws.send_str(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        for i in range(warmup + jobs):
            prompt_id = str(uuid.uuid4())
            t0 = time.time()
            body = {"prompt": prompt(i), "client_id": client_id, "prompt_id": prompt_id}
            async with http.post("/api/prompt", json=body) as response:
                response.raise_for_status()
                await response.read()
            t_post = time.time()
            first = None
            while True:
                frame = await ws.receive()
                if frame.type is aiohttp.WSMsgType.BINARY:
                    continue
                if frame.type is not aiohttp.WSMsgType.TEXT:
                    raise RuntimeError(f"the /ws closed: {frame.type.name}")
                # Only the first frame of each job and its success are needed: skip the parsing of the rest.
                if first is not None and "execution_success" not in frame.data:
                    continue
                message = json.loads(frame.data)
                data = message.get("data")
                if isinstance(data, dict) and data.get("prompt_id") == prompt_id:
                    first = first or (message["type"], time.time())
                    if message["type"] == "execution_success":
                        break
            if i >= warmup:
                rows.append((prompt_id, t0, t_post, first, time.time()))
    conn = await asyncpg.connect(sync_url(stack.database_url))
    try:
        phases: dict[str, list[float]] = {name: [] for name in PHASES}
        for prompt_id, t0, t_post, first, t_done in rows:
            job = await conn.fetchrow(
                "SELECT extract(epoch FROM created_at) AS c, extract(epoch FROM assigned_at) AS a, "
                "extract(epoch FROM started_at) AS s, extract(epoch FROM finished_at) AS f "
                "FROM jobs WHERE id = $1",
                uuid.UUID(prompt_id),
            )
            created, assigned, started, finished = (float(job[k]) for k in "casf")
            values = (t_post - t0, assigned - created, started - assigned, finished - started,
                      t_done - finished, first[1] - t0, t_done - t0)  # fmt: skip
            for name, value in zip(PHASES, values, strict=True):
                phases[name].append(value * 1000)
    finally:
        await conn.close()
    print(f"phases of one job, p50 over {jobs} sequential jobs (ms)")
    for name, values in phases.items():
        ordered = sorted(values)
        p50, p90 = ordered[len(ordered) // 2], ordered[int(len(ordered) * 0.9)]
        print(f"  {name:22s} p50 {p50:7.1f}   p90 {p90:7.1f}")
    print(f"  first event on the socket: {rows[0][3][0]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    env = {"LOG_LEVEL": "WARNING"}
    with tempfile.TemporaryDirectory(prefix="ccphases") as tmp, running_stack(Path(tmp), env=env) as stack:
        asyncio.run(run(stack, args.jobs, args.warmup))


if __name__ == "__main__":
    main()
