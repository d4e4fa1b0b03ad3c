"""Registration, heartbeats and catalogues of inference instances."""

from __future__ import annotations

import uuid
from typing import Any

from database.job_states import JobStatus
from database.repositories.fleet import FleetRepository, Registration, catalogue_hash
from database.repositories.queue import QueueRepository
from services.dispatcher.errors import CatalogueHashMismatch, InstanceNotRegistered, UnknownCatalogue
from services.dispatcher.fleet.schemas import InstanceInfo, RegisterAnswer, RegisterBody
from services.dispatcher.state import DispatcherState


async def put_catalogue(state: DispatcherState, digest: str, object_info: dict[str, Any]) -> None:
    """Store a catalogue once per content; a new one makes the pending jobs it can run routable."""
    if catalogue_hash(object_info) != digest:
        raise CatalogueHashMismatch()
    async with state.database.session() as session:
        await FleetRepository(session).put_catalogue(object_info)
    state.loop.nudge()


async def register(state: DispatcherState, body: RegisterBody) -> RegisterAnswer:
    """(Re-)register an instance: live and healthy again, ready for work at once."""
    async with state.database.session() as session:
        fleet = FleetRepository(session)
        if not await fleet.catalogue_exists(body.catalogue_hash):
            raise UnknownCatalogue()
        # Jobs submitted while this catalogue was stored but served by no instance could not name it in
        # `runnable_on`; its first instance makes them routable (later ones have nothing to add).
        first = not await fleet.catalogue_in_use(body.catalogue_hash, besides=body.id)
        await fleet.register(
            Registration(
                id=body.id,
                address=str(body.address).rstrip("/"),
                capacity=body.capacity,
                catalogue_hash=body.catalogue_hash,
                comfyui_version=body.comfyui_version,
                system_stats=body.system_stats,
                features=body.features,
            )
        )
        if first:
            await fleet.make_routable(body.catalogue_hash)
    state.loop.nudge()
    s = state.settings
    return RegisterAnswer(heartbeat_interval=s.heartbeat_interval, lease_seconds=s.lease_seconds)


async def heartbeat(
    state: DispatcherState, instance_id: uuid.UUID, *, healthy: bool, running: list[uuid.UUID]
) -> dict[uuid.UUID, JobStatus]:
    """Renew the leases of the jobs the instance still holds; their statuses (`cancelling`: interrupt
    it). A reported job missing from the answer is no longer the instance's (re-queued, ended)."""
    async with state.database.session() as session:
        if not await FleetRepository(session).heartbeat(instance_id, healthy=healthy):
            raise InstanceNotRegistered(f"instance {instance_id} is not registered (or was lost)")
        if not running:
            return {}
        return await QueueRepository(session).renew_leases(instance_id, running, state.settings.lease_seconds)


async def list_instances(state: DispatcherState) -> list[InstanceInfo]:
    async with state.database.session() as session:
        rows = await FleetRepository(session).list()
    return [
        InstanceInfo(
            id=instance.id,
            address=instance.address,
            state=instance.status if instance.status != "live" or instance.healthy else "unhealthy",
            status=instance.status,
            healthy=instance.healthy,
            capacity=instance.capacity,
            running=running,
            catalogue_hash=instance.catalogue_hash,
            comfyui_version=instance.comfyui_version,
            registered_at=instance.registered_at,
            last_heartbeat_at=instance.last_heartbeat_at,
        )
        for instance, running in rows
    ]
