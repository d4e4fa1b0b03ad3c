"""Listings of a user's named files (`files`), for the node catalogue's per-user combo lists and
`/internal/files`. Lookups and writes of single names are in `results.py`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from database.models import File


@dataclass(frozen=True, slots=True)
class FileName:
    subfolder: str
    filename: str
    created_at: datetime


class UserFileRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def listing(
        self, user_id: uuid.UUID, type_: str, *, top_level_only: bool = False
    ) -> list[FileName]:
        """The user's files of one type, newest first (ties by name, so the order is stable)."""
        stmt = select(File.subfolder, File.filename, File.created_at).where(
            File.user_id == user_id, File.type == type_
        )
        if top_level_only:
            stmt = stmt.where(File.subfolder == "")
        stmt = stmt.order_by(File.created_at.desc(), File.subfolder, File.filename)
        return [FileName(*row) for row in await self.session.execute(stmt)]
