"""What the live inference instances report about themselves (read side, for ingest's /system_stats)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from database.models import InferenceInstance


class FleetInfoRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def live_system_stats(self) -> list[dict[str, Any]]:
        """The `/system_stats` of each live instance, most recently heard from first."""
        stmt = (
            select(InferenceInstance.system_stats)
            .where(InferenceInstance.status == "live", InferenceInstance.system_stats.is_not(None))
            .order_by(InferenceInstance.last_heartbeat_at.desc(), InferenceInstance.id)
        )
        return [stats for stats in await self.session.scalars(stmt) if isinstance(stats, dict)]
