"""Everything one simulated ComfyUI holds in memory, and its simulated restarts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from comfy_cloud.simulator import images
from comfy_cloud.simulator.catalog import Catalog
from comfy_cloud.simulator.config import SimulatorConfig
from comfy_cloud.simulator.executor import Executor
from comfy_cloud.simulator.files import Dirs, input_file_exists
from comfy_cloud.simulator.hub import Hub
from comfy_cloud.simulator.store import PromptStore

log = logging.getLogger(__name__)
RestartHook = Callable[[float], Awaitable[None]]


class SimState:
    def __init__(self, config: SimulatorConfig, argv: list[str] | None = None) -> None:
        self.config = config
        self.argv = argv or ["main.py", "--simulator", "--base-directory", str(config.base_dir)]
        self.dirs = Dirs(config)
        self.catalog = Catalog(config)
        self.hub = Hub()
        self.store = PromptStore(self.broadcast_status)
        self.executor = Executor(self)
        self.restart_hook: RestartHook | None = None  # set by SimulatorServer: restarts the real listener
        self.down_until = 0.0  # without a hook: refuse requests until this monotonic time
        self.started_at = time.time()
        self.counters: dict[str, int] = {"prompts_queued": 0, "restarts": 0, "sockets_dropped": 0}
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        self.dirs.prepare()
        images.warm_up()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.executor.loop())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def crash(self) -> None:
        """Lose everything a ComfyUI process holds: the running prompt, the queue, history, sockets."""
        await self.stop()
        dropped = await self.hub.drop_all(code=1012)
        self.counters["sockets_dropped"] += dropped
        self.hub = Hub()
        self.store = PromptStore(self.broadcast_status)
        self.executor = Executor(self)
        self.counters["restarts"] += 1

    def request_restart(self, down_seconds: float) -> None:
        """Restart after the current response is sent (the caller's request must finish first)."""
        task = asyncio.get_running_loop().create_task(self._restart(down_seconds))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _restart(self, down_seconds: float) -> None:
        await asyncio.sleep(0)  # let the /_sim/restart response go out
        if self.restart_hook is not None:
            await self.restart_hook(down_seconds)
            return
        self.down_until = time.monotonic() + down_seconds
        await self.crash()
        await self.start()

    def refusing(self) -> bool:
        return time.monotonic() < self.down_until

    # -- shared helpers ------------------------------------------------------------------------------
    def queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self.store.remaining()}}

    def broadcast_status(self) -> None:
        self.hub.send_json("status", {"status": self.queue_info()}, None)

    def file_exists(self, class_type: str, name: str) -> bool:
        return input_file_exists(self.dirs, name)

    def stats(self) -> dict[str, Any]:
        running = self.store.running
        return {
            "simulator": True,
            "version": self.config.version,
            "uptime_seconds": round(time.time() - self.started_at, 3),
            "running": running.prompt_id if running else None,
            "pending": self.store.pending_ids(),
            "queue_remaining": self.store.remaining(),
            "history_size": len(self.store.history),
            "prompts_executed": self.executor.prompts_done,
            "sockets": len(self.hub.connections),
            "registered_sids": sorted(self.hub.sockets),
            "messages_sent": self.hub.messages_sent,
            "node_delay": self.config.node_delay,
            "class_delays": dict(self.config.class_delays),
            **self.counters,
        }
