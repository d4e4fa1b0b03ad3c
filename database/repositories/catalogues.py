"""Read side of the node catalogues, for services that cache them (ingest validates every prompt against
the catalogues of the live instances; one catalogue can be 1.6 MB, so callers fetch only new hashes)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from database.models import InferenceInstance, NodeCatalogue

# Built once: ingest asks this whenever it checks that its cached library is current.
_LIVE_HASHES = (
    select(InferenceInstance.catalogue_hash)
    .where(InferenceInstance.status == "live", InferenceInstance.catalogue_hash.is_not(None))
    .distinct()
)


class CatalogueReadRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def live_hashes(self) -> set[str]:
        """Hashes of the catalogues that live instances serve (a small query, fine per request)."""
        return {h for h in await self.session.scalars(_LIVE_HASHES) if h is not None}

    async def object_infos(self, hashes: Collection[str]) -> dict[str, dict[str, Any]]:
        """hash -> object_info for the given hashes (unknown ones are absent)."""
        if not hashes:
            return {}
        stmt = select(NodeCatalogue.hash, NodeCatalogue.object_info).where(
            NodeCatalogue.hash.in_(list(hashes))
        )
        return {row[0]: row[1] for row in await self.session.execute(stmt)}
