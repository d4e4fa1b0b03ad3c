"""A fake-but-real inference instance: the inference contract over real HTTP on 127.0.0.1.

It accepts hand-offs (`POST /jobs`, 409 when full) and interrupts (`POST /jobs/{id}/interrupt`),
records both, registers and heartbeats through the real `DispatcherClient`, and reports job progress to
the database the way the inference service does (`transition` with its instance id as guard). It never
runs ComfyUI: a job ends when the test says so, or at once with `auto_complete`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from comfy_cloud.clients.dispatcher import (
    DispatcherClient,
    InstanceNotRegistered,
    InstanceRegistration,
    UnknownCatalogue,
)
from database.engine import Database
from database.job_states import InvalidJobTransition, JobStatus, transition
from database.repositories.fleet import catalogue_hash


class QuietServer(uvicorn.Server):
    """uvicorn without signal handling: many run in one test process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


@contextlib.asynccontextmanager
async def serve(app: Any, *, lifespan: str = "off") -> AsyncIterator[str]:
    """Serve an ASGI app on 127.0.0.1 at a free port; yields its base URL."""
    # Created with proto=IPPROTO_TCP so that asyncio sets TCP_NODELAY on accepted connections (it skips
    # sockets made with proto 0, as uvicorn's own are): otherwise Nagle and delayed ACKs add 40 ms to
    # every response written in two parts.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, lifespan=lifespan, log_level="warning")
    server = QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(10):
            while not server.started:
                if task.done():
                    task.result()
                    raise RuntimeError("server stopped before starting")
                await asyncio.sleep(0.005)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@dataclass(frozen=True, slots=True)
class HandOffRecord:
    job_id: uuid.UUID
    attempt: int
    at: float


class FakeInstance:
    def __init__(
        self,
        db: Database,
        dispatcher_url: str,
        object_info: dict[str, Any],
        *,
        capacity: int = 1,
        auto_complete: bool = False,
        react_to_cancel: bool = True,
    ) -> None:
        self.id = uuid.uuid4()
        self.db = db
        self.object_info = object_info
        self.catalogue = catalogue_hash(object_info)
        self.capacity = capacity
        self.auto_complete = auto_complete
        self.react_to_cancel = react_to_cancel
        self.answer: int | None = None  # force this status on hand-offs (e.g. 500)
        self.delay = 0.0  # answer hand-offs this late (after accepting them)
        self.handoffs: list[HandOffRecord] = []
        self.interrupts: list[tuple[uuid.UUID, str]] = []
        self.rejections = 0
        self.running: set[uuid.UUID] = set()
        self.max_running = 0
        self.heartbeats = 0
        self.url = ""
        self.client = DispatcherClient(dispatcher_url)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self.app = Starlette(
            routes=[
                Route("/jobs", self._post_job, methods=["POST"]),
                Route("/jobs/{job_id}/interrupt", self._post_interrupt, methods=["POST"]),
            ]
        )

    # --- the inference API ------------------------------------------------------------------------

    async def _post_job(self, request: Request) -> JSONResponse:
        body = await request.json()
        if self.answer is not None:
            return JSONResponse({"error": "forced"}, status_code=self.answer)
        if len(self.running) >= self.capacity:
            self.rejections += 1
            return JSONResponse({"error": "full"}, status_code=409)
        job_id = uuid.UUID(body["job_id"])
        self.running.add(job_id)
        self.max_running = max(self.max_running, len(self.running))
        self.handoffs.append(HandOffRecord(job_id, int(body["attempt"]), time.monotonic()))
        if self.auto_complete:
            self._spawn(self.finish(job_id))
        if self.delay:
            await asyncio.sleep(self.delay)
        return JSONResponse({"job_id": str(job_id)}, status_code=202)

    async def _post_interrupt(self, request: Request) -> JSONResponse:
        job_id = uuid.UUID(request.path_params["job_id"])
        reason = (await request.json())["reason"]
        self.interrupts.append((job_id, reason))
        if job_id not in self.running:
            return JSONResponse({"error": "not here"}, status_code=404)
        if reason == "cancel" and self.react_to_cancel:
            self._spawn(self.report(job_id, JobStatus.CANCELLED))
        elif reason == "timeout":
            self.running.discard(job_id)  # the dispatcher already ended it
        return JSONResponse({}, status_code=202)

    # --- what the inference service does ---------------------------------------------------------

    async def start(self) -> None:
        self._url_cm = serve(self.app)
        self.url = await self._url_cm.__aenter__()
        await self.register()

    async def register(self) -> None:
        registration = InstanceRegistration(
            id=self.id, address=self.url, capacity=self.capacity, catalogue_hash=self.catalogue
        )
        try:
            await self.client.register(registration)
        except UnknownCatalogue:
            await self.client.put_catalogue(self.catalogue, self.object_info)
            await self.client.register(registration)

    async def heartbeat(self, *, healthy: bool = True) -> dict[uuid.UUID, str]:
        """One heartbeat; drops the jobs the answer no longer counts as ours (as the contract says)."""
        sent = set(self.running)
        answer = await self.client.heartbeat(self.id, healthy=healthy, running=sent)
        self.heartbeats += 1
        self.running -= sent - set(answer)
        return answer

    def start_heartbeats(self, interval: float) -> None:
        async def beat() -> None:
            while True:
                with contextlib.suppress(InstanceNotRegistered):
                    await self.heartbeat()
                await asyncio.sleep(interval)

        self._heartbeat_task = asyncio.create_task(beat())

    async def stop_heartbeats(self) -> None:
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat_task
            self._heartbeat_task = None

    async def begin(self, job_id: uuid.UUID) -> None:
        async with self.db.session() as session:
            await transition(session, job_id, JobStatus.IN_PROGRESS, instance_id=self.id)

    async def report(self, job_id: uuid.UUID, status: JobStatus) -> None:
        """A final report, guarded by this instance (refused if the job is no longer ours)."""
        try:
            async with self.db.session() as session:
                await transition(session, job_id, status, instance_id=self.id)
        finally:
            self.running.discard(job_id)

    async def finish(self, job_id: uuid.UUID) -> None:
        with contextlib.suppress(InvalidJobTransition):
            await self.begin(job_id)
            await self.report(job_id, JobStatus.COMPLETED)
        self.running.discard(job_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        await self.stop_heartbeats()
        for task in set(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.aclose()
        await self._url_cm.__aexit__(None, None, None)
