"""This instance in the dispatcher's fleet: registration with the node catalogue, then heartbeats.

- Register: `POST /instances/register` with the catalogue hash; a 409 (unknown catalogue) means PUT
  the full `/object_info` first (ingest serves node definitions from it), then register again.
- Heartbeat every `heartbeat_interval` with `healthy` (ComfyUI answers) and the running job ids. The
  answer renews their leases; `cancelling` means interrupt the job; a job missing from the answer is no
  longer ours (lease lost): drop it. 404 means register again.
- After ComfyUI reconnects (it may have restarted with other custom nodes) the catalogue is read again
  and, if it changed, registered again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from comfy_cloud.clients.dispatcher import (
    DispatcherClient,
    InstanceNotRegistered,
    InstanceRegistration,
    UnknownCatalogue,
)
from comfy_cloud.errors import AppError
from services.inference.catalogue import Catalogue
from services.inference.comfyui.client import ComfyUIClient
from services.inference.comfyui.socket import SocketFollower
from services.inference.config import InferenceSettings
from services.inference.worker import JobNotHere, Worker

log = logging.getLogger(__name__)


class FleetAgent:
    def __init__(
        self,
        settings: InferenceSettings,
        *,
        comfy: ComfyUIClient,
        follower: SocketFollower,
        catalogue: Catalogue,
        worker: Worker,
        dispatcher: DispatcherClient,
    ) -> None:
        self._settings = settings
        self._comfy = comfy
        self._follower = follower
        self._catalogue = catalogue
        self._worker = worker
        self._dispatcher = dispatcher
        self.registered = False
        self.healthy = False
        self.interval = settings.heartbeat_interval
        self.lease_seconds: float | None = None
        self.heartbeats = 0
        self._connections_seen = 0
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._last_error: str | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="fleet")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def wake(self) -> None:
        """Heartbeat now (e.g. a job just ended) instead of at the next interval."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
                self._last_error = None
            except asyncio.CancelledError:
                raise
            except (AppError, OSError) as exc:
                # The same failure every second (ComfyUI or the dispatcher down) is logged once.
                level = logging.DEBUG if str(exc) == self._last_error else logging.WARNING
                log.log(level, "fleet: %s", exc)
                self._last_error = str(exc)
            except Exception:
                log.exception("fleet: unexpected failure")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval if self.registered else 1.0)

    async def tick(self) -> None:
        await self._catalogue_check()
        if not self.registered:
            await self.register()
        else:
            await self.heartbeat()

    async def _catalogue_check(self) -> None:
        connections = self._follower.connections
        if connections > self._connections_seen:
            # The first connection uses the catalogue as fetched; a reconnect may be a new process.
            if self._connections_seen and await self._catalogue.refresh():
                log.info("ComfyUI's node catalogue changed: registering again")
                self.registered = False
            self._connections_seen = connections

    async def register(self) -> None:
        object_info = await self._catalogue.object_info()
        digest = self._catalogue.hash
        assert digest is not None
        stats = await self._comfy.system_stats()
        registration = InstanceRegistration(
            id=self._settings.instance_id,
            address=self._settings.advertise_url or "",
            capacity=self._settings.capacity,
            catalogue_hash=digest,
            comfyui_version=(stats.get("system") or {}).get("comfyui_version"),
            system_stats=stats,
            features=await self._comfy.features(),
        )
        try:
            terms = await self._dispatcher.register(registration)
        except UnknownCatalogue:
            await self._dispatcher.put_catalogue(digest, object_info)
            terms = await self._dispatcher.register(registration)
        self.interval = terms.heartbeat_interval
        self.lease_seconds = terms.lease_seconds
        self.registered = True
        self.healthy = True
        log.info("registered with the dispatcher (catalogue %s, heartbeat %.1fs)", digest[:12], self.interval)

    async def heartbeat(self) -> None:
        self.healthy = self._follower.connected.is_set() and await self._comfy.alive()
        running = self._worker.running_ids()
        try:
            jobs = await self._dispatcher.heartbeat(
                self._settings.instance_id, healthy=self.healthy, running=running
            )
        except InstanceNotRegistered:
            log.info("the dispatcher forgot this instance: registering again")
            self.registered = False
            self._wake.set()
            return
        self.heartbeats += 1
        await self._apply(running, jobs)

    async def _apply(self, sent: list[uuid.UUID], jobs: dict[uuid.UUID, str]) -> None:
        # Only the ids this heartbeat carried: a job accepted meanwhile is not in the answer yet.
        for job_id in sent:
            status = jobs.get(job_id)
            if status is None:
                log.warning("the dispatcher no longer counts job %s as ours: dropping it", job_id)
                self._worker.lost(job_id)
            elif status == "cancelling":
                with contextlib.suppress(JobNotHere):
                    await self._worker.interrupt(job_id, "cancel")
