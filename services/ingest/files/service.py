"""Uploads and lookups of a user's files: bytes in object storage (content-addressed), names in `files`.

Naming follows ComfyUI per user and folder (protocol reference §3.6): without `overwrite`, a name whose
current content is the same bytes is reused as it is, a name holding other bytes makes the upload
`name (1).png`, `name (2).png`, ... With `overwrite` the name is repointed to the new bytes.
"""

from __future__ import annotations

import asyncio
import json
import posixpath
import uuid
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from comfy_cloud.errors import BadRequest
from comfy_cloud.storage import Storage, StoredObject
from database.models import File
from database.repositories.results import FileSpec, ResultRepository
from services.ingest.files import images
from services.ingest.files.forms import UploadForm
from services.ingest.files.limits import UploadRejected, check_image_file
from services.ingest.files.names import (
    FileNotFound,
    candidate_names,
    guess_type,
    normalize_subfolder,
    split_annotation,
    upload_location,
    view_location,
)
from services.ingest.files.schemas import UploadResponse

_OCTET = "application/octet-stream"
# ComfyUI tries names without bound; a folder with this many "name (n).ext" is not a real use.
_MAX_RENAMES = 10_000
_CHUNK = 1 << 20


class FileService:
    def __init__(self, session: AsyncSession, storage: Storage) -> None:
        self.files = ResultRepository(session)
        self.storage = storage

    # -- uploads ---------------------------------------------------------------------------------

    async def upload_image(self, user_id: uuid.UUID, form: UploadForm) -> UploadResponse:
        folder, filename = _checked_location(form)
        await asyncio.to_thread(check_image_file, form.file.file)
        stored = await self.storage.put_stream(_chunks(form), content_type=guess_type(filename) or _OCTET)
        name = await self._name(user_id, form, folder, filename, stored)
        return UploadResponse(name=name, subfolder=form.subfolder, type=form.type)

    async def upload_mask(self, user_id: uuid.UUID, form: UploadForm) -> UploadResponse:
        """The original image (`original_ref`) with the uploaded mask's alpha, saved as a PNG."""
        folder, filename = _checked_location(form)
        await asyncio.to_thread(check_image_file, form.file.file)
        original = await self._original(user_id, form.original_ref)
        mask = await asyncio.to_thread(form.file.file.read)
        data = await asyncio.to_thread(images.composite_mask, await self.read(original), mask)
        stored = await self.storage.put_bytes(data, content_type="image/png")
        name = await self._name(user_id, form, folder, filename, stored)
        return UploadResponse(name=name, subfolder=form.subfolder, type=form.type)

    async def _original(self, user_id: uuid.UUID, original_ref: str | None) -> File:
        ref = _parse_ref(original_ref)
        kind, folder, name = _ref_location(ref)
        original = await self.files.get_file(user_id, kind, folder, name)
        if original is None:
            # ComfyUI answers 200 and writes nothing; a name that then does not exist helps nobody.
            raise UploadRejected("Original image not found")
        return original

    async def _name(
        self, user_id: uuid.UUID, form: UploadForm, folder: str, filename: str, stored: StoredObject
    ) -> str:
        def spec(name: str) -> FileSpec:
            return FileSpec(
                user_id=user_id,
                type=form.type,
                subfolder=folder,
                filename=name,
                content_hash=stored.sha256,
                size=stored.size,
                content_type=guess_type(name) or stored.content_type,
                storage_key=stored.key,
            )

        if form.overwrite:
            await self.files.put_file(spec(filename), overwrite=True)
            return filename
        for attempt, name in enumerate(candidate_names(filename)):
            if attempt > _MAX_RENAMES:
                raise UploadRejected(f"Too many files named like {filename!r} in this folder")
            existing = await self.files.get_file(user_id, form.type, folder, name)
            if existing is None:
                # Insert unless a concurrent upload took the name first; then judge its bytes.
                existing = await self.files.put_file(spec(name), overwrite=False)
            if existing.content_hash == stored.sha256:
                return name
        raise AssertionError("unreachable")

    # -- lookups ---------------------------------------------------------------------------------

    async def locate(self, user_id: uuid.UUID, filename: str, type_: str, subfolder: str | None) -> File:
        """The caller's file as `/view` addresses it; another user's file is exactly an unknown one."""
        kind, folder, name = view_location(filename, type_, subfolder)
        file = await self.files.get_file(user_id, kind, folder, name)
        if file is None:
            raise FileNotFound()
        return file

    async def read(self, file: File) -> bytes:
        stream = await self.storage.open_stream(file.storage_key)
        return b"".join([chunk async for chunk in stream])


def _checked_location(form: UploadForm) -> tuple[str, str]:
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in form.filename):
        raise BadRequest("invalid file name")  # it would end up in response headers
    return upload_location(form.subfolder, form.filename)


async def _chunks(form: UploadForm) -> AsyncIterator[bytes]:
    file = form.file.file
    await asyncio.to_thread(file.seek, 0)
    while chunk := await asyncio.to_thread(file.read, _CHUNK):
        yield chunk


def _parse_ref(original_ref: str | None) -> dict[str, Any]:
    try:
        ref = json.loads(original_ref or "")
    except ValueError:
        raise BadRequest("original_ref must be a JSON object") from None
    if not isinstance(ref, dict) or not isinstance(ref.get("filename"), str):
        raise BadRequest("original_ref must be a JSON object with a filename")
    for key in ("subfolder", "type"):
        if ref.get(key) is not None and not isinstance(ref[key], str):
            raise BadRequest(f"original_ref.{key} must be a string")
    return ref


def _ref_location(ref: dict[str, Any]) -> tuple[str, str, str]:
    """Where `original_ref` points. Unlike `/view`, ComfyUI joins the whole name onto the folder, so
    `"sub/x.png"` is read from `sub/`."""
    kind, folder, _ = view_location(ref["filename"], ref.get("type") or "output", ref.get("subfolder") or "")
    directory, base = posixpath.split(split_annotation(ref["filename"])[0])
    joined = normalize_subfolder(posixpath.join(folder, directory))
    if joined is None or not base:
        raise BadRequest("invalid original_ref")
    return kind, joined, base
