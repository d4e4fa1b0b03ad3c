"""Optionally run the ComfyUI process itself (`--comfyui-dir DIR` / INFERENCE_COMFYUI_DIR).

It starts `main.py` listening where COMFYUI_URL points, with no browser and no banner, plus the
operator's INFERENCE_COMFYUI_ARGS (e.g. `--cpu`, `--max-upload-size 1024`). Its output goes to our
log. When it dies, the jobs it was running are given back (re-queued while attempts remain, else
failed: a restarted ComfyUI has forgotten them) and it is started again, with backoff if it keeps dying.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from services.inference.config import InferenceSettings

log = logging.getLogger(__name__)
comfy_log = logging.getLogger("comfyui")

_FIRST_BACKOFF = 0.5
_MAX_BACKOFF = 30.0
_HEALTHY_AFTER = 60.0  # a process that lived this long resets the backoff


class ComfyUISupervisor:
    def __init__(
        self,
        comfyui_dir: Path,
        *,
        host: str,
        port: int,
        python: str | None = None,
        extra_args: list[str] | None = None,
        on_exit: Callable[[], None] | None = None,
    ) -> None:
        self.comfyui_dir = Path(comfyui_dir)
        self.host = host
        self.port = port
        self.python = python or sys.executable
        self.extra_args = extra_args or []
        self._on_exit = on_exit
        self.process: asyncio.subprocess.Process | None = None
        self.restarts = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @classmethod
    def from_settings(cls, settings: InferenceSettings, on_exit: Callable[[], None]) -> ComfyUISupervisor:
        assert settings.comfyui_dir is not None
        url = urlsplit(settings.comfyui_url)
        return cls(
            settings.comfyui_dir,
            host=url.hostname or "127.0.0.1",
            port=url.port or (443 if url.scheme == "https" else 8188),
            python=settings.comfyui_python,
            extra_args=shlex.split(settings.comfyui_args),
            on_exit=on_exit,
        )

    def command(self) -> list[str]:
        return [
            self.python,
            "main.py",
            "--listen",
            self.host,
            "--port",
            str(self.port),
            "--disable-auto-launch",
            "--dont-print-server",
            *self.extra_args,
        ]

    async def start(self) -> None:
        if not (self.comfyui_dir / "main.py").is_file():
            raise FileNotFoundError(f"no main.py in the ComfyUI directory {self.comfyui_dir}")
        self._stopping = False
        await self._spawn()
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="comfyui-supervisor")

    async def _spawn(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            *self.command(),
            cwd=self.comfyui_dir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        log.info("started ComfyUI (pid %d): %s", self.process.pid, " ".join(self.command()))

    async def _watch(self) -> None:
        backoff = _FIRST_BACKOFF
        while not self._stopping:
            assert self.process is not None
            started = time.monotonic()
            await self._pump_output(self.process)
            code = await self.process.wait()
            if self._stopping:
                return
            log.error("ComfyUI exited with code %s; its running jobs are given back", code)
            if self._on_exit is not None:
                self._on_exit()
            if time.monotonic() - started >= _HEALTHY_AFTER:
                backoff = _FIRST_BACKOFF
            backoff = await self._respawn(backoff)

    async def _respawn(self, backoff: float) -> float:
        """Start ComfyUI again after `backoff` seconds (longer each time it keeps failing)."""
        while not self._stopping:
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, _MAX_BACKOFF)
            try:
                await self._spawn()
            except OSError as exc:
                log.error("cannot start ComfyUI: %s", exc)
                continue
            self.restarts += 1
            break
        return backoff

    @staticmethod
    async def _pump_output(process: asyncio.subprocess.Process) -> None:
        """Copy ComfyUI's output into our log until it closes (when the process ends)."""
        assert process.stdout is not None
        async for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                comfy_log.info("%s", line)

    async def stop(self, grace: float = 10.0) -> None:
        self._stopping = True
        process = self.process
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), grace)
            except TimeoutError:
                process.kill()
                await process.wait()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
