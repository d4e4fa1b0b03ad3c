"""The whole stack as real processes, for end-to-end tests: ComfyUI simulator(s), dispatcher, inference,
ingest, each started as `comfy-cloud serve X` (or the simulator's module) on free 127.0.0.1 ports, against
a fresh database of its own.

The processes and their environment are `comfy_cloud.stack.plan()`'s, exactly what `comfy-cloud up --sim`
runs; only the ports and the database differ. The database is created on `TEST_DATABASE_URL`'s server
when set, else on an embedded server under the data directory, and dropped afterwards.

    with running_stack(tmp_path) as stack:
        httpx.get(f"{stack.ingest_url}/api/object_info")   # dev mode: no credentials on loopback

Every child runs in its own process group and is stopped with SIGTERM (SIGKILL after 15 s); its output
goes to `<data_dir>/logs/<name>.log`, and `stack.logs()` returns the tails for a failure message.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx

from comfy_cloud import embedded_postgres
from comfy_cloud.stack import Child, StackOptions, plan
from database.engine import sync_url
from database.migrate import upgrade

READY_TIMEOUT = 90.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_block(count: int) -> int:
    """The first of `count` consecutive free ports (plan() numbers simulators and workers upwards)."""
    for _attempt in range(50):
        first = free_port()
        if first + count < 65535 and all(_is_free(first + i) for i in range(1, count)):
            return first
    raise RuntimeError(f"no block of {count} free ports")


def _is_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Stack:
    ingest_url: str
    dispatcher_url: str
    database_url: str
    simulator_url: str
    data_dir: Path
    services: list[Service] = field(default_factory=list)

    def logs(self, lines: int = 40) -> str:
        parts = []
        for service in self.services:
            text = service.log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {service.name} (exit {service.process.poll()}) ---\n" + "\n".join(text))
        return "\n".join(parts)


@contextmanager
def running_stack(
    data_dir: Path, *, sim_workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[Stack]:
    """`env` adds to (or overrides) every child's environment, e.g. STORAGE_URL for GCS."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with fresh_database(data_dir) as database_url:
        options = StackOptions(
            data_dir=data_dir,
            ingest_port=free_port(),
            dispatcher_port=free_port(),
            inference_port=free_port_block(sim_workers),
            simulate=True,
            sim_workers=sim_workers,
            sim_port=free_port_block(sim_workers),
        )
        stack = Stack(
            ingest_url=f"http://127.0.0.1:{options.ingest_port}",
            dispatcher_url=f"http://127.0.0.1:{options.dispatcher_port}",
            database_url=database_url,
            simulator_url=f"http://127.0.0.1:{options.sim_port}",
            data_dir=data_dir,
        )
        try:
            for child in plan(options, database_url):
                child.env.update(env or {})
                stack.services.append(_start(child, data_dir / "logs"))
                if child.ready_url:
                    _wait(stack, child.ready_url, lambda r: r.status_code == 200)
            # Ready means a worker registered its catalogue: the node library is not empty.
            _wait(stack, f"{stack.ingest_url}/api/object_info", lambda r: r.status_code == 200 and r.json())
            yield stack
        finally:
            for service in reversed(stack.services):
                _stop(service)


def _start(child: Child, log_dir: Path) -> Service:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{child.name}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            child.argv,
            env={**os.environ, **child.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stopped as a whole
        )
    return Service(child.name, process, log)


def _wait(stack: Stack, url: str, ok: Callable[[httpx.Response], object]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        for service in stack.services:
            if service.process.poll() is not None:
                raise RuntimeError(f"{service.name} exited while the stack started\n{stack.logs()}")
        try:
            if ok(httpx.get(url, timeout=2.0)):
                return
        except (httpx.HTTPError, ValueError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready after {READY_TIMEOUT:.0f}s\n{stack.logs()}")


def _stop(service: Service) -> None:
    if service.process.poll() is not None:
        return
    os.killpg(service.process.pid, signal.SIGTERM)
    try:
        service.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(service.process.pid, signal.SIGKILL)
        service.process.wait(timeout=15)


@contextmanager
def fresh_database(data_dir: Path) -> Iterator[str]:
    """A new, migrated database (dropped on exit) on TEST_DATABASE_URL's server or an embedded one."""
    server = os.environ.get("TEST_DATABASE_URL")
    if not server:
        # Not under data_dir: the server runs as another user, which must reach its directory
        # (pytest's temporary directories are private to root).
        embedded_dir = Path(tempfile.mkdtemp(prefix="ccpg", dir="/tmp"))
        # Registered first, so it runs after the server's own exit handler has stopped it (LIFO).
        atexit.register(shutil.rmtree, embedded_dir, True)
        server = embedded_postgres.start(embedded_dir)
    name = f"cc_stack_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(server, f'CREATE DATABASE "{name}"'))
    url = embedded_postgres.with_database(server, name)
    try:
        upgrade(url)
        yield url
    finally:
        asyncio.run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(url: str, sql: str) -> None:
    conn = await asyncpg.connect(sync_url(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()
