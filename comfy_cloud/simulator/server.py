"""Running the simulator on aiohttp: in the current event loop, in a thread, or as the CLI.

`SimulatorServer` owns the listening socket, so `/_sim/restart` can behave like a real ComfyUI restart:
the listener closes (new connections are refused), every socket drops, state is lost, and after the
requested down time the same port listens again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from comfy_cloud.simulator.app import create_app
from comfy_cloud.simulator.config import SimulatorConfig
from comfy_cloud.simulator.responses import SIM
from comfy_cloud.simulator.state import SimState

BACKLOG = 2048
# Seconds a stop waits for requests still in flight (uvicorn's graceful timeout was 1 s too).
SHUTDOWN_TIMEOUT = 1.0


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
    # without it a response written in two parts waits ~40 ms for the peer's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.setblocking(False)
    return sock


class SimulatorServer:
    """One simulator app served on host:port (port 0 picks a free port, kept across restarts)."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        argv: list[str] | None = None,
        log_level: str = "warning",
    ) -> None:
        self.app: web.Application = create_app(config, argv=argv)
        self.state: SimState = self.app[SIM]
        self.state.restart_hook = self.restart
        self.host = host
        self.port = port
        self.log_level = log_level  # applied by run_simulator (the CLI); in-process hosts own logging
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/ws"

    async def start(self) -> None:
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        # No access log (a line per request costs CPU), no signal handling (left to the host).
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT
        )
        try:
            await runner.setup()  # on_startup: the executor starts
            await web.SockSite(runner, sock, backlog=BACKLOG).start()
        except BaseException:
            sock.close()
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()  # closes the listener and every socket, then stops the executor

    async def restart(self, down_seconds: float = 0.0) -> None:
        """Like a ComfyUI process restart: crash, stay down `down_seconds`, listen again on the same port."""
        await self.state.crash()
        await self.stop()
        await asyncio.sleep(down_seconds)
        await self.start()


@contextlib.asynccontextmanager
async def serve_simulator(
    config: SimulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve a simulator in the running event loop; yields its base URL (http://127.0.0.1:PORT)."""
    server = SimulatorServer(config, host, port)
    await server.start()
    try:
        yield server.url
    finally:
        await server.stop()


def run_loop(main: Any) -> None:
    """asyncio.run, on uvloop when it is installed (the simulator is a benchmark target)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


class SimulatorThread:
    """A simulator on its own event loop in a daemon thread (for sync code and isolated benchmarks)."""

    def __init__(self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.server = SimulatorServer(config, host, port)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="comfy-simulator", daemon=True)

    @property
    def url(self) -> str:
        return self.server.url

    def _run(self) -> None:
        try:
            run_loop(self._main())
        except BaseException as exc:  # reported to start()
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        await self.server.start()
        self._ready.set()
        await self._stopped.wait()
        await self.server.stop()

    def start(self) -> str:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError("simulator failed to start") from self._error
        return self.url

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(30)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def run_simulator(
    config: SimulatorConfig,
    host: str = "127.0.0.1",
    port: int = 8188,
    *,
    on_started: Callable[[SimulatorServer], None] | None = None,
    **kwargs: Any,
) -> None:
    """Serve until interrupted (Ctrl-C): the CLI entry point. `on_started` sees the bound server."""
    server = SimulatorServer(config, host, port, **kwargs)
    logging.basicConfig(level=server.log_level.upper(), format="%(levelname)s: %(name)s: %(message)s")

    async def main() -> None:
        await server.start()
        if on_started is not None:
            on_started(server)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        run_loop(main())
