"""`comfy-cloud up`: the whole stack on one machine, as supervised child processes.

Order: embedded PostgreSQL (unless DATABASE_URL is set) and migrations, then (with --sim) the ComfyUI
simulators, the dispatcher, one inference instance per ComfyUI, and ingest. Each service is a real
process (`comfy-cloud serve X`), exactly as in a container deployment. A child that dies is restarted
with backoff; Ctrl-C (or SIGTERM) stops every child, then the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from comfy_cloud.secrets import generate_secret_key

READY_TIMEOUT = 60.0


@dataclass
class StackOptions:
    data_dir: Path
    host: str = "127.0.0.1"
    ingest_port: int = 8080
    dispatcher_port: int = 8081
    inference_port: int = 8082
    comfyui_urls: list[str] = field(default_factory=lambda: ["http://127.0.0.1:8188"])
    simulate: bool = False
    sim_workers: int = 1
    sim_port: int = 8188
    force_dev_mode: bool = False
    # Supervise ComfyUI from this checkout: each inference instance starts its own main.py on the port
    # of its ComfyUI URL, with input/output/temp/user directories of its own under the data dir (two
    # ComfyUIs sharing an output directory would overwrite each other's files).
    comfyui_dir: Path | None = None
    comfyui_args: str = ""


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    ready_url: str | None
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0


def _secret_key(data_dir: Path) -> str:
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = data_dir / "secret_key"
    if not path.exists():
        path.write_text(generate_secret_key())
        path.chmod(0o600)
    return path.read_text().strip()


def _instance_id(data_dir: Path, index: int) -> str:
    # Stable across restarts, so a restarted instance re-registers as itself.
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"comfy-cloud:{data_dir}:inference:{index}"))


def plan(options: StackOptions, database_url: str) -> list[Child]:
    """The child processes of the stack, in start order."""
    data = options.data_dir
    loopback = options.host in {"127.0.0.1", "localhost", "::1"}
    common = {
        "DATABASE_URL": database_url,
        "STORAGE_URL": os.environ.get("STORAGE_URL", f"file://{data / 'storage'}"),
        "SECRET_KEY": _secret_key(data),
        "HOST": options.host,
    }
    serve = [sys.executable, "-m", "comfy_cloud.cli", "serve"]
    dispatcher_url = f"http://127.0.0.1:{options.dispatcher_port}"
    children: list[Child] = []
    comfyui_urls = options.comfyui_urls
    if options.simulate:
        comfyui_urls = []
        for i in range(options.sim_workers):
            port = options.sim_port + i
            comfyui_urls.append(f"http://127.0.0.1:{port}")
            argv = [sys.executable, "-m", "comfy_cloud.simulator", "--host", "127.0.0.1", "--port", str(port),
                    "--base-dir", str(data / "simulator" / str(i))]  # fmt: skip
            children.append(Child(f"simulator-{i}", argv, {}, f"http://127.0.0.1:{port}/api/prompt"))
    children.append(
        Child(
            "dispatcher",
            [*serve, "dispatcher"],
            {**common, "PORT": str(options.dispatcher_port)},
            f"{dispatcher_url}/ready",
        )
    )
    for i, comfyui_url in enumerate(comfyui_urls):
        port = options.inference_port + i
        env = {
            **common,
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "COMFYUI_URL": comfyui_url,
            "DISPATCHER_URL": dispatcher_url,
            "INSTANCE_ID": _instance_id(data, i),
            "ADVERTISE_URL": f"http://127.0.0.1:{port}",
        }
        if options.comfyui_dir is not None and not options.simulate:
            env["INFERENCE_COMFYUI_DIR"] = str(options.comfyui_dir)
            env["INFERENCE_COMFYUI_ARGS"] = _comfyui_args(options, data / "comfyui" / str(i))
        children.append(Child(f"inference-{i}", [*serve, "inference"], env, None))
    ingest_env = {
        **common,
        "PORT": str(options.ingest_port),
        "DISPATCHER_URL": dispatcher_url,
        "INGEST_DEV_MODE": "1" if loopback or options.force_dev_mode else "0",
        "INGEST_DEV_MODE_FORCE": "1" if options.force_dev_mode else "0",
    }
    ready_host = "127.0.0.1" if options.host in {"0.0.0.0", "::"} else options.host
    children.append(
        Child("ingest", [*serve, "ingest"], ingest_env, f"http://{ready_host}:{options.ingest_port}/ready")
    )
    return children


def _comfyui_args(options: StackOptions, home: Path) -> str:
    own_dirs = [
        f"--{kind}-directory {shlex.quote(str(home / kind))}" for kind in ("input", "output", "temp", "user")
    ]
    return " ".join([*own_dirs, options.comfyui_args]).strip()


async def run_stack(options: StackOptions) -> None:
    from comfy_cloud.cli import database_url_for
    from database.migrate import upgrade

    options.data_dir.mkdir(parents=True, exist_ok=True)
    _say(f"data directory: {options.data_dir}")
    database_url = await asyncio.to_thread(database_url_for, options.data_dir)
    await asyncio.to_thread(upgrade, database_url)
    _say("database ready (migrations applied)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    children = plan(options, database_url)
    if options.simulate:
        _say("with --sim: the ComfyUI servers are SIMULATORS (a few model-free nodes), not ComfyUI")
    supervisors = [asyncio.create_task(_supervise(child, stop)) for child in children]
    try:
        for child in children:
            if child.ready_url and not await _wait_ready(child.ready_url, stop):
                if not stop.is_set():
                    _say(f"{child.name} did not become ready in {READY_TIMEOUT:.0f}s; see its log above")
                break
        else:
            _banner(options)
        await stop.wait()
    finally:
        stop.set()
        _say("stopping...")
        for child in reversed(children):
            await _terminate(child)
        await asyncio.gather(*supervisors, return_exceptions=True)
        _say("stopped")


async def _supervise(child: Child, stop: asyncio.Event) -> None:
    """Run a child until stop; restart it with backoff when it dies on its own."""
    env = {**os.environ, **child.env}
    while not stop.is_set():
        started = time.monotonic()
        child.process = await asyncio.create_subprocess_exec(
            *child.argv,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us only; we stop children in order
        )
        await _relay_output(child.name, child.process)
        code = await child.process.wait()
        if stop.is_set():
            return
        child.restarts += 1
        backoff = 1.0 if time.monotonic() - started > 30 else min(30.0, 2.0**child.restarts)
        _say(f"{child.name} exited with code {code}; restarting in {backoff:.0f}s")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), backoff)


async def _relay_output(name: str, process: asyncio.subprocess.Process) -> None:
    assert process.stdout is not None
    async for line in process.stdout:
        sys.stdout.write(f"[{name}] {line.decode(errors='replace')}")
        sys.stdout.flush()


async def _terminate(child: Child) -> None:
    process = child.process
    if process is None or process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), 15)
    except TimeoutError:
        process.kill()
        await process.wait()


async def _wait_ready(url: str, stop: asyncio.Event) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT
    async with httpx.AsyncClient(timeout=2.0) as client:
        while time.monotonic() < deadline and not stop.is_set():
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code == 200:
                    return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
    return False


def _banner(options: StackOptions) -> None:
    url = f"http://{options.host}:{options.ingest_port}"
    _say(f"ready: open {url}/ in a browser, or point a ComfyUI client at {url}")
    _say("Ctrl-C stops everything; jobs and files are kept in the data directory")


def _say(message: str) -> None:
    sys.stdout.write(f"[comfy-cloud] {message}\n")
    sys.stdout.flush()
