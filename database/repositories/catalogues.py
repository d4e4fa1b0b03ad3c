"""Read side of the node catalogues, for services that cache them (ingest validates every prompt against
the catalogues of the live instances; one catalogue can be 1.6 MB, so callers fetch only new hashes)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Text, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from database.models import InferenceInstance, NodeCatalogue

# Built once: ingest asks this on every prompt.
_LIVE_HASHES = (
    select(InferenceInstance.catalogue_hash)
    .where(InferenceInstance.status == "live", InferenceInstance.catalogue_hash.is_not(None))
    .distinct()
)


# For a prompt: the live catalogues (validation) and the catalogues of registered instances that have
# every class it needs (its `runnable_on`), in one round trip.
_ROUTING = text(
    "SELECT c.hash, bool_or(i.status = 'live') AS live, c.node_classes @> :required AS runnable "
    "FROM node_catalogues c JOIN inference_instances i ON i.catalogue_hash = c.hash "
    "GROUP BY c.hash"
).bindparams(bindparam("required", type_=ARRAY(Text)))


@dataclass(frozen=True, slots=True)
class Routing:
    live: set[str]  # hashes of the catalogues that live instances serve (as live_hashes())
    runnable: list[str]  # as FleetRepository.catalogues_running(required)


class CatalogueReadRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def live_hashes(self) -> set[str]:
        """Hashes of the catalogues that live instances serve (a small query, fine per request)."""
        return {h for h in await self.session.scalars(_LIVE_HASHES) if h is not None}

    async def routing(self, required_nodes: list[str]) -> Routing:
        """live_hashes() and FleetRepository.catalogues_running(required_nodes) in one query."""
        rows = await self.session.execute(_ROUTING, {"required": sorted(set(required_nodes))})
        live: set[str] = set()
        runnable: list[str] = []
        for row in rows:
            if row.live:
                live.add(row.hash)
            if row.runnable:
                runnable.append(row.hash)
        return Routing(live, runnable)

    async def object_infos(self, hashes: Collection[str]) -> dict[str, dict[str, Any]]:
        """hash -> object_info for the given hashes (unknown ones are absent)."""
        if not hashes:
            return {}
        stmt = select(NodeCatalogue.hash, NodeCatalogue.object_info).where(
            NodeCatalogue.hash.in_(list(hashes))
        )
        return {row[0]: row[1] for row in await self.session.execute(stmt)}
