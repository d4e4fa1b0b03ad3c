"""A user's files under ComfyUI's user directory (workflows, settings, templates), one row per file.

Directories are not stored: a directory exists while some file lies under it. Paths are relative to the
user's root, `/`-separated and already normalised by the caller; every query is scoped to one user.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, literal, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from database.models import UserData


@dataclass(frozen=True, slots=True)
class UserFileInfo:
    path: str
    size: int
    created_at: datetime
    modified_at: datetime


_INFO = (UserData.path, UserData.size, UserData.created_at, UserData.modified_at)


def _info(row: object) -> UserFileInfo:
    return UserFileInfo(row.path, row.size, row.created_at, row.modified_at)  # type: ignore[attr-defined]


class UserDataRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: uuid.UUID, path: str) -> UserData | None:
        return await self.session.get(UserData, (user_id, path))

    async def info(self, user_id: uuid.UUID, path: str) -> UserFileInfo | None:
        stmt = select(*_INFO).where(UserData.user_id == user_id, UserData.path == path)
        row = (await self.session.execute(stmt)).first()
        return None if row is None else _info(row)

    async def under(self, user_id: uuid.UUID, directory: str) -> list[UserFileInfo]:
        """Every file below `directory` ("" = the whole root), ordered by path."""
        stmt = select(*_INFO).where(UserData.user_id == user_id)
        if directory:
            stmt = stmt.where(func.starts_with(UserData.path, directory + "/"))
        rows = await self.session.execute(stmt.order_by(UserData.path))
        return [_info(row) for row in rows]

    async def is_directory(self, user_id: uuid.UUID, path: str) -> bool:
        """Some file lies below `path` ("" is the root: true once the user has any file)."""
        prefix = path + "/" if path else ""
        stmt = select(
            select(UserData.path)
            .where(UserData.user_id == user_id, func.starts_with(UserData.path, prefix))
            .exists()
        )
        return bool(await self.session.scalar(stmt))

    async def file_among(self, user_id: uuid.UUID, paths: list[str]) -> str | None:
        """The first of `paths` that is a file (to find a file standing where a directory must be)."""
        if not paths:
            return None
        stmt = select(UserData.path).where(UserData.user_id == user_id, UserData.path.in_(paths)).limit(1)
        return await self.session.scalar(stmt)

    async def put(
        self, user_id: uuid.UUID, path: str, content: bytes, *, overwrite: bool
    ) -> UserFileInfo | None:
        """Write the file; None when it exists and `overwrite` is false. A rewrite is a new file as far
        as times go (ComfyUI writes a temporary file and renames it over the old one)."""
        stmt = insert(UserData).values(user_id=user_id, path=path, content=content, size=len(content))
        if overwrite:
            stmt = stmt.on_conflict_do_update(
                index_elements=["user_id", "path"],
                set_={
                    "content": stmt.excluded.content,
                    "size": stmt.excluded.size,
                    "created_at": func.now(),
                    "modified_at": func.now(),
                },
            )
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=["user_id", "path"])
        row = (await self.session.execute(stmt.returning(*_INFO))).first()
        return None if row is None else _info(row)

    async def lock(self, user_id: uuid.UUID, path: str, initial: bytes) -> UserData:
        """The file, created with `initial` if missing, locked for this transaction (read-modify-write)."""
        stmt = (
            insert(UserData)
            .values(user_id=user_id, path=path, content=initial, size=len(initial))
            .on_conflict_do_nothing(index_elements=["user_id", "path"])
        )
        await self.session.execute(stmt)
        locked = select(UserData).where(UserData.user_id == user_id, UserData.path == path).with_for_update()
        row = await self.session.scalar(locked.execution_options(populate_existing=True))
        assert row is not None
        return row

    async def delete(self, user_id: uuid.UUID, path: str) -> bool:
        stmt = (
            delete(UserData)
            .where(UserData.user_id == user_id, UserData.path == path)
            .returning(UserData.path)
        )
        return await self.session.scalar(stmt) is not None

    async def move(self, user_id: uuid.UUID, source: str, dest: str) -> UserFileInfo | None:
        """Rename a file over whatever file `dest` names. Keeps `modified` (a rename does not touch the
        content) and renews `created` (ComfyUI reports the inode change time)."""
        if source != dest:
            await self.delete(user_id, dest)
        stmt = (
            update(UserData)
            .where(UserData.user_id == user_id, UserData.path == source)
            .values(path=literal(dest), created_at=func.now())
            .returning(*_INFO)
        )
        row = (await self.session.execute(stmt)).first()
        return None if row is None else _info(row)
