"""Everything one inference instance runs, started and stopped together (the app's lifespan owns one).

Start order: database, storage and broadcaster; the ComfyUI process if supervised; the ComfyUI client
and its socket; the worker; the fleet agent (registration waits until ComfyUI answers).
Stop order is the reverse; running jobs are interrupted and given back to the queue.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from comfy_cloud.broadcast import Broadcaster, open_broadcaster
from comfy_cloud.clients.dispatcher import DispatcherClient
from comfy_cloud.secrets import Sealer
from comfy_cloud.storage import Storage, open_storage
from database.engine import Database
from services.inference.catalogue import Catalogue
from services.inference.comfyui.client import ComfyUIClient
from services.inference.comfyui.socket import SocketFollower
from services.inference.config import InferenceSettings
from services.inference.fleet import FleetAgent
from services.inference.runner import RunnerDeps
from services.inference.supervisor import ComfyUISupervisor
from services.inference.worker import Worker

log = logging.getLogger(__name__)


class Instance:
    def __init__(
        self,
        settings: InferenceSettings,
        *,
        storage: Storage | None = None,
        broadcaster: Broadcaster | None = None,
        dispatcher: DispatcherClient | None = None,
    ) -> None:
        self.settings = settings
        self.db = Database(settings.database_url, application_name="comfy-cloud-inference")
        # One job's few outputs at a time: writing a small one on the loop (fsyncs included) costs less
        # CPU than a worker-thread hop, and what else the instance does (socket, heartbeats) can wait
        # that long.
        self.storage = storage or open_storage(settings.storage_url, small_writes_inline=True)
        self._own_broadcaster = broadcaster is None
        # It only publishes (the relayed events): no LISTEN connection of its own.
        self.broadcaster = broadcaster or open_broadcaster(
            settings.broadcast_url, settings.database_url, listen=False
        )
        self._own_dispatcher = dispatcher is None and bool(settings.dispatcher_url)
        if dispatcher is None and settings.dispatcher_url:
            dispatcher = DispatcherClient(settings.dispatcher_url)
        self.dispatcher = dispatcher
        # Our own client id for ComfyUI, new per process: a socket left over by an earlier process
        # cannot unregister it (§4.1 item 6).
        self.client_id = f"cc-{settings.instance_id.hex[:8]}-{uuid.uuid4().hex[:12]}"
        self.comfy = ComfyUIClient(settings.comfyui_url, timeout=settings.http_timeout)
        self.follower = SocketFollower(
            self.comfy.ws_url(self.client_id),
            ping_interval=settings.ws_ping_interval,
            ping_timeout=settings.ws_ping_timeout,
        )
        self.catalogue = Catalogue(self.comfy)
        self.worker = Worker(
            RunnerDeps(
                settings=settings,
                db=self.db,
                storage=self.storage,
                broadcaster=self.broadcaster,
                comfy=self.comfy,
                follower=self.follower,
                catalogue=self.catalogue,
                client_id=self.client_id,
                sealer=Sealer(settings.secret_key) if settings.secret_key else None,
            )
        )
        self.fleet: FleetAgent | None = None
        if self.dispatcher is not None:
            self.fleet = FleetAgent(
                settings,
                comfy=self.comfy,
                follower=self.follower,
                catalogue=self.catalogue,
                worker=self.worker,
                dispatcher=self.dispatcher,
            )
        self.supervisor: ComfyUISupervisor | None = None
        if settings.comfyui_dir is not None:
            self.supervisor = ComfyUISupervisor.from_settings(settings, on_exit=self.worker.comfyui_died)

    async def start(self) -> None:
        if self._own_broadcaster:
            await self.broadcaster.start()
        if self.supervisor is not None:
            await self.supervisor.start()
        self.follower.start()
        if self.fleet is not None:
            self.fleet.start()
        log.info(
            "inference instance %s serving ComfyUI at %s", self.settings.instance_id, self.comfy.base_url
        )

    async def stop(self) -> None:
        if self.fleet is not None:
            await self.fleet.stop()
        await self.worker.shutdown()
        await self.follower.stop()
        if self.supervisor is not None:
            await self.supervisor.stop()
        await self.comfy.aclose()
        if self.dispatcher is not None and self._own_dispatcher:
            await self.dispatcher.aclose()
        if self._own_broadcaster:
            await self.broadcaster.close()
        await self.db.dispose()

    async def __aenter__(self) -> Instance:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def comfyui_ready(self) -> bool:
        return self.follower.connected.is_set() and await self.comfy.alive()

    def status(self) -> dict[str, Any]:
        return {
            "instance_id": str(self.settings.instance_id),
            "address": self.settings.advertise_url,
            "comfyui": {
                "url": self.comfy.base_url,
                "connected": self.follower.connected.is_set(),
                "jobs_api": self.comfy.has_jobs_api,
                "supervised": self.supervisor is not None,
                "restarts": self.supervisor.restarts if self.supervisor else None,
            },
            "registered": self.fleet.registered if self.fleet else None,
            "healthy": self.fleet.healthy if self.fleet else None,
            "capacity": self.worker.capacity,
            "running": self.worker.status(),
            "finished": self.worker.finished,
        }
