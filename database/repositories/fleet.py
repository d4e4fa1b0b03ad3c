"""Inference instances and the node catalogues their ComfyUI servers offer."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import Text, bindparam, func, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from database.job_states import ACTIVE_STATUSES
from database.models import InferenceInstance, Job, NodeCatalogue
from database.sql import load_queries

_ACTIVE = [s.value for s in ACTIVE_STATUSES]
_SOURCES = load_queries("fleet.sql")
# text() once per query, not per call (it parses the SQL for bind parameters each time).
QUERIES = {name: text(sql) for name, sql in _SOURCES.items()}
# Built once: ingest asks this on every prompt.
_CATALOGUES_RUNNING = select(NodeCatalogue.hash).where(
    NodeCatalogue.node_classes.contains(bindparam("required", type_=ARRAY(Text))),
    NodeCatalogue.hash.in_(select(InferenceInstance.catalogue_hash)),
)


def catalogue_hash(object_info: dict[str, Any]) -> str:
    canonical = json.dumps(object_info, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Registration:
    id: uuid.UUID
    address: str
    capacity: int
    catalogue_hash: str | None
    comfyui_version: str | None = None
    system_stats: dict[str, Any] | None = None
    features: dict[str, Any] | None = None


class FleetRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def put_catalogue(self, object_info: dict[str, Any]) -> str:
        """Store a catalogue once per content. A new one also makes the pending jobs it can run
        routable to it (capability routing keys on catalogue hashes)."""
        digest = catalogue_hash(object_info)
        stmt = (
            insert(NodeCatalogue)
            .values(hash=digest, object_info=object_info, node_classes=sorted(object_info))
            .on_conflict_do_nothing()
            .returning(NodeCatalogue.hash)
        )
        if await self.session.scalar(stmt) is not None:
            await self.make_routable(digest)
        return digest

    async def make_routable(self, digest: str) -> int:
        """Add a stored catalogue to `runnable_on` of every pending job it can run; how many changed."""
        result = await self.session.execute(QUERIES["make_routable"], {"hash": digest})
        return result.rowcount  # type: ignore[attr-defined]

    async def catalogue_exists(self, digest: str) -> bool:
        stmt = select(NodeCatalogue.hash).where(NodeCatalogue.hash == digest)
        return await self.session.scalar(stmt) is not None

    async def catalogue_in_use(self, digest: str, *, besides: uuid.UUID) -> bool:
        """Whether an instance other than `besides` was ever registered with this catalogue."""
        stmt = select(InferenceInstance.id).where(
            InferenceInstance.catalogue_hash == digest, InferenceInstance.id != besides
        )
        return await self.session.scalar(stmt.limit(1)) is not None

    async def catalogues_running(self, required_nodes: list[str]) -> list[str]:
        """Hashes of the known catalogues (of registered instances) that offer every required class."""
        required = sorted(set(required_nodes))
        return list(await self.session.scalars(_CATALOGUES_RUNNING, {"required": required}))

    async def live_catalogues(self) -> list[NodeCatalogue]:
        """Catalogues of live instances (the node library ingest shows)."""
        stmt = select(NodeCatalogue).where(
            NodeCatalogue.hash.in_(
                select(InferenceInstance.catalogue_hash).where(InferenceInstance.status == "live")
            )
        )
        return list(await self.session.scalars(stmt))

    async def register(self, reg: Registration) -> InferenceInstance:
        values = {
            "address": reg.address,
            "capacity": reg.capacity,
            "catalogue_hash": reg.catalogue_hash,
            "comfyui_version": reg.comfyui_version,
            "system_stats": reg.system_stats,
            "features": reg.features,
            "status": "live",
            "healthy": True,
            "last_heartbeat_at": func.now(),
        }
        stmt = insert(InferenceInstance).values(id=reg.id, **values)
        stmt = stmt.on_conflict_do_update(index_elements=["id"], set_=values).returning(InferenceInstance)
        instance = await self.session.scalar(stmt)
        assert instance is not None
        return instance

    async def heartbeat(self, instance_id: uuid.UUID, *, healthy: bool) -> bool:
        """False when the instance is unknown or was marked lost: it must register again."""
        stmt = (
            update(InferenceInstance)
            .where(InferenceInstance.id == instance_id, InferenceInstance.status != "lost")
            .values(last_heartbeat_at=func.now(), healthy=healthy)
            .returning(InferenceInstance.id)
        )
        return await self.session.scalar(stmt) is not None

    async def mark_lost(self, stale_after: timedelta) -> list[uuid.UUID]:
        stmt = (
            update(InferenceInstance)
            .where(
                InferenceInstance.status == "live",
                InferenceInstance.last_heartbeat_at < func.now() - stale_after,
            )
            .values(status="lost")
            .returning(InferenceInstance.id)
        )
        return list(await self.session.scalars(stmt))

    async def mark_unhealthy(self, instance_ids: Sequence[uuid.UUID]) -> None:
        """No more work for these until their next heartbeat says they are healthy."""
        if instance_ids:
            await self.session.execute(
                update(InferenceInstance)
                .where(InferenceInstance.id.in_(list(instance_ids)))
                .values(healthy=False)
            )

    async def addresses(self, instance_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, str]:
        ids = list(set(instance_ids))
        if not ids:
            return {}
        stmt = select(InferenceInstance.id, InferenceInstance.address).where(InferenceInstance.id.in_(ids))
        return {r.id: r.address for r in await self.session.execute(stmt)}

    async def set_status(self, instance_id: uuid.UUID, status: str) -> None:
        await self.session.execute(
            update(InferenceInstance).where(InferenceInstance.id == instance_id).values(status=status)
        )

    async def list(self) -> list[tuple[InferenceInstance, int]]:
        """Every instance with its number of active jobs."""
        # Counted per instance through ix_jobs_active_by_instance (a text() column list in a subquery
        # has no named columns to join on).
        active = (
            select(func.count())
            .select_from(Job)
            .where(Job.instance_id == InferenceInstance.id, Job.status.in_(_ACTIVE))
            .scalar_subquery()
        )
        stmt = select(InferenceInstance, active).order_by(InferenceInstance.registered_at)
        rows = await self.session.execute(stmt)
        return [(r[0], r[1]) for r in rows]
