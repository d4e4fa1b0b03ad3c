"""A user's data directory (workflows, subgraphs, templates, settings) kept in `user_data`, with ComfyUI's
statuses and text bodies (protocol reference §2.6). Every call is scoped to the caller: another user's
file is simply not there.

Deliberate differences from the file system ComfyUI uses: a directory exists while a file lies under it
(an emptied folder disappears: its listing is the 404 the frontend reads as empty); writing where a file
stands in for a directory, or over a directory, is a 400 (ComfyUI: an OSError, 400 or 500); moving a
whole directory is refused (400).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from comfy_cloud.errors import BadRequest
from database.repositories.userdata import UserDataRepository, UserFileInfo
from services.ingest.errors import Body, ComfyError
from services.ingest.userdata.paths import ancestors, hidden, resolve

SETTINGS_FILE = "comfy.settings.json"


class TextError(ComfyError):
    body = Body.TEXT


class DirectoryNotProvided(TextError):
    """Directory not provided"""

    status_code = 400


class InvalidDirectory(TextError):
    """Invalid directory"""

    status_code = 403


class DirectoryNotFound(TextError):
    """Directory not found"""

    status_code = 404


class FileExists(TextError):
    """File already exists"""

    status_code = 409


class PathNotFound(TextError):
    """Requested path not found"""

    status_code = 404


class InvalidPath(TextError):
    """Invalid path requested"""

    status_code = 400


class NotADirectory(TextError):
    """Requested path is not a directory"""

    status_code = 400


class Forbidden(ComfyError):
    """The path leaves the user's directory."""

    status_code = 403


class Missing(ComfyError):
    """No such file."""

    status_code = 404


def file_info(info: UserFileInfo, relative_to: str = "") -> dict[str, Any]:
    path = info.path[len(relative_to) + 1 :] if relative_to else info.path
    return {
        "path": path,
        "size": info.size,
        "modified": int(info.modified_at.timestamp() * 1000),
        "created": int(info.created_at.timestamp() * 1000),
    }


class UserDataService:
    def __init__(self, session: AsyncSession, user_id: uuid.UUID) -> None:
        self.repo = UserDataRepository(session)
        self.user_id = user_id

    # -- listings --------------------------------------------------------------------------------

    async def listing(
        self, directory: str | None, *, recurse: bool, full_info: bool, split: bool
    ) -> list[Any]:
        """`GET /userdata?dir=`: files below `dir`, relative to it."""
        if not directory:
            raise DirectoryNotProvided()
        path = resolve(directory)
        if path is None:
            raise InvalidDirectory()
        if path and not await self.repo.is_directory(self.user_id, path):
            if await self.repo.info(self.user_id, path) is None:
                raise DirectoryNotFound()
            return []  # a file: ComfyUI globs "<file>/*", which finds nothing
        results: list[Any] = []
        for info in await self.repo.under(self.user_id, path):
            relative = info.path[len(path) + 1 :] if path else info.path
            if hidden(relative) or (not recurse and "/" in relative):
                continue
            if full_info:
                results.append(file_info(info, path))
            elif split:
                results.append([relative, *relative.split("/")])
            else:
                results.append(relative)
        return results

    async def listing_v2(self, requested: str) -> list[dict[str, Any]]:
        """`GET /v2/userdata?path=`: every directory and file below `path`, paths from the root."""
        path = resolve(requested) if requested else ""
        if path is None:
            raise InvalidPath()
        if path and not await self.repo.is_directory(self.user_id, path):
            if await self.repo.info(self.user_id, path) is None:
                raise PathNotFound()
            raise NotADirectory()
        files = await self.repo.under(self.user_id, path)
        directories: set[str] = set()
        entries: list[dict[str, Any]] = []
        for info in files:
            directories.update(d for d in ancestors(info.path) if len(d) > len(path))
            name = info.path.rsplit("/", 1)[-1]
            modified = info.modified_at.timestamp()
            entries.append(
                {"name": name, "path": info.path, "type": "file", "size": info.size, "modified": modified}
            )
        entries += [
            {"name": d.rsplit("/", 1)[-1], "path": d, "type": "directory"} for d in sorted(directories)
        ]
        # ComfyUI: directories first, then by name (case-insensitive); the sort is stable.
        entries.sort(key=lambda e: (e["type"] != "directory", e["name"].lower()))
        return entries

    # -- files -----------------------------------------------------------------------------------

    async def read(self, file: str) -> tuple[str, bytes]:
        path = self._path(file)
        row = await self.repo.get(self.user_id, path) if path else None
        if row is None:
            raise Missing()
        return path, row.content

    async def write(self, file: str, content: bytes, *, overwrite: bool) -> UserFileInfo:
        path = self._path(file)
        await self._check_writable(path)
        info = await self.repo.put(self.user_id, path, content, overwrite=overwrite)
        if info is None:
            raise FileExists()
        return info

    async def delete(self, file: str) -> None:
        path = self._path(file)
        if not path or not await self.repo.delete(self.user_id, path):
            raise Missing()

    async def move(self, file: str, dest: str, *, overwrite: bool) -> UserFileInfo:
        source, target = self._path(file), self._path(dest)
        if not source or await self.repo.info(self.user_id, source) is None:
            if source and await self.repo.is_directory(self.user_id, source):
                raise BadRequest("moving a directory is not supported")
            raise Missing()
        if not overwrite and await self.repo.info(self.user_id, target) is not None:
            raise FileExists()
        if target != source:
            await self._check_writable(target)
        info = await self.repo.move(self.user_id, source, target)
        if info is None:  # removed by a concurrent request since we looked
            raise Missing()
        return info

    def _path(self, file: str) -> str:
        if not file:
            raise BadRequest("file name required")
        path = resolve(file)
        if path is None:
            raise Forbidden()
        return path

    async def _check_writable(self, path: str) -> None:
        if not path or await self.repo.is_directory(self.user_id, path):
            raise BadRequest("Invalid filename: it names a directory")
        blocking = await self.repo.file_among(self.user_id, ancestors(path))
        if blocking is not None:
            raise BadRequest(f"Invalid filename: {blocking} is a file")

    # -- settings (the user's comfy.settings.json) ----------------------------------------------

    async def settings(self) -> dict[str, Any]:
        row = await self.repo.get(self.user_id, SETTINGS_FILE)
        return _parse_settings(row.content) if row is not None else {}

    async def update_settings(self, values: dict[str, Any]) -> None:
        """Merge `values` into the settings, under a row lock: the frontend posts several settings at
        once on first load, and a read-modify-write without it would lose some."""
        row = await self.repo.lock(self.user_id, SETTINGS_FILE, b"{}")
        settings = _parse_settings(row.content)
        settings.update(values)
        await self.repo.put(self.user_id, SETTINGS_FILE, _dump_settings(settings), overwrite=True)


def _parse_settings(content: bytes) -> dict[str, Any]:
    # ComfyUI logs a corrupted file and answers {}; a non-object is as useless.
    try:
        value = json.loads(content)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _dump_settings(settings: dict[str, Any]) -> bytes:
    return json.dumps(settings, indent=4).encode()
