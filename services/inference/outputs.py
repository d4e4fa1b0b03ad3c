"""A job's output files: streamed from ComfyUI's `/view` into object storage, named for their owner.

Each file is stored once per job, as soon as its `executed` event arrives (so the name the user sees
in that event already works on `/api/view`) and again from `/history` at the end for anything missed.
The bytes stream through (storage spools them to disk while hashing), so memory stays flat whatever
the size. A failed transfer is retried with exponential backoff; a file ComfyUI no longer has is not.
The `files` row of each file is committed at once (one statement); the `outputs` rows go with the
final history.
"""

from __future__ import annotations

import asyncio
import logging
import mimetypes
import uuid
from dataclasses import dataclass
from typing import Any

from comfy_cloud.storage import Storage, StorageError, StoredObject
from database.engine import Database
from database.repositories.results import FileSpec, OutputItem, put_output_file
from services.inference import names
from services.inference.comfyui.client import ComfyUIClient, ComfyUIError, ComfyUIUnavailable
from services.inference.names import FileRef

log = logging.getLogger(__name__)

# Read the system's MIME tables (~4 ms of CPU) and compile the URL pattern guess_type parses names
# with now, rather than inside the first job's output.
mimetypes.guess_type("warm-up.png")


@dataclass(frozen=True, slots=True)
class StoredFile:
    ref: FileRef  # as the user sees it
    file_id: uuid.UUID | None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 5
    backoff: float = 0.5  # first delay; doubled after each failure
    concurrency: int = 4


class OutputStoreError(Exception):
    """Some output files could not be stored."""


class OutputStore:
    def __init__(
        self,
        *,
        comfy: ComfyUIClient,
        storage: Storage,
        db: Database,
        job_id: uuid.UUID,
        user_id: uuid.UUID,
        policy: RetryPolicy,
        inputs: dict[FileRef, StoredFile] | None = None,
    ) -> None:
        self._comfy = comfy
        self._storage = storage
        self._db = db
        self._job_id = job_id
        self._user_id = user_id
        self._policy = policy
        # The job's own inputs, as uploaded to ComfyUI: shown to the user under their own names.
        self._stored: dict[FileRef, StoredFile] = dict(inputs or {})
        self.failures: dict[FileRef, str] = {}

    # -- names -------------------------------------------------------------------------------------

    def visible(self, ref: FileRef) -> FileRef:
        known = self._stored.get(ref)
        if known is not None:
            return known.ref
        return FileRef(ref.type, ref.subfolder, names.output_name(ref.filename, self._job_id))

    def rewrite(self, outputs: dict[str, Any]) -> dict[str, Any]:
        """The outputs with every file item renamed as the user sees it (other values unchanged)."""
        return {
            node_id: {key: self._rewrite_list(items) for key, items in node_outputs.items()}
            if isinstance(node_outputs, dict)
            else node_outputs
            for node_id, node_outputs in outputs.items()
        }

    def _rewrite_list(self, items: Any) -> Any:
        if not isinstance(items, list):
            return items
        return [self._rewrite_item(item) if names.is_file_item(item) else item for item in items]

    def _rewrite_item(self, item: dict[str, Any]) -> dict[str, Any]:
        ref = self.visible(names.file_ref(item))
        return {**item, "filename": ref.filename, "subfolder": ref.subfolder, "type": ref.type}

    def records(self, outputs: dict[str, Any]) -> list[OutputItem]:
        """One row per structured output item (files and other dicts), as the user sees it."""
        found = []
        for node_id, key, index, item in names.output_items(outputs):
            if not isinstance(item, dict):
                continue
            file_id = None
            if names.is_file_item(item):
                stored = self._stored.get(names.file_ref(item))
                file_id = stored.file_id if stored else None
                item = self._rewrite_item(item)
            found.append(OutputItem(node_id, key, index, item, file_id))
        return found

    def failed_in(self, outputs: dict[str, Any]) -> list[FileRef]:
        """The files of `outputs` that could not be stored."""
        return sorted({ref for ref in _file_refs(outputs) if ref in self.failures}, key=str)

    # -- storing -----------------------------------------------------------------------------------

    async def store(self, outputs: dict[str, Any]) -> None:
        """Store every file of `outputs` not stored yet; failures are kept in `failures`."""
        todo = sorted((ref for ref in _file_refs(outputs) if ref not in self._stored), key=str)
        if not todo:
            return
        if len(todo) == 1:
            # The usual `executed`: one file, stored in this task (no semaphore, no gathered task).
            await self._store_or_note_failure(todo[0])
            return
        gate = asyncio.Semaphore(self._policy.concurrency)

        async def one(ref: FileRef) -> None:
            async with gate:
                await self._store_or_note_failure(ref)

        await asyncio.gather(*(one(ref) for ref in todo))

    async def _store_or_note_failure(self, ref: FileRef) -> None:
        try:
            self._stored[ref] = await self._store_one(ref)
            self.failures.pop(ref, None)
        except (ComfyUIError, StorageError) as exc:
            log.warning("output %s/%s (%s) not stored: %s", ref.subfolder, ref.filename, ref.type, exc)
            self.failures[ref] = str(exc)

    async def _store_one(self, ref: FileRef) -> StoredFile:
        obj = await self._transfer(ref)
        visible = self.visible(ref)
        file_id = await self._name(visible, obj)
        if file_id is None:  # the short name is another file's: this job's whole id makes it unique
            unique = names.output_name(ref.filename, self._job_id, unique=True)
            visible = FileRef(visible.type, visible.subfolder, unique)
            file_id = await self._name(visible, obj)
            if file_id is None:
                raise StorageError(f"the output name {unique} is taken by another file")
        return StoredFile(visible, file_id)

    async def _name(self, visible: FileRef, obj: StoredObject) -> uuid.UUID | None:
        spec = FileSpec(
            user_id=self._user_id,
            type=visible.type,
            subfolder=visible.subfolder,
            filename=visible.filename,
            content_hash=obj.sha256,
            size=obj.size,
            content_type=obj.content_type,
            storage_key=obj.key,
            job_id=self._job_id,
        )
        async with self._db.raw() as conn:
            return await put_output_file(conn, spec)

    async def _transfer(self, ref: FileRef) -> StoredObject:
        delay = self._policy.backoff
        for attempt in range(1, self._policy.attempts + 1):
            try:
                async with self._comfy.view(ref.filename, ref.subfolder, ref.type) as response:
                    content_type = _content_type(ref.filename, response.headers.get("content-type"))
                    return await self._storage.put_stream(response.aiter_bytes(), content_type=content_type)
            except (ComfyUIUnavailable, StorageError) as exc:
                if attempt == self._policy.attempts:
                    raise
                log.info(
                    "output %s: attempt %d failed (%s); retrying in %.1fs", ref.filename, attempt, exc, delay
                )
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")


def _file_refs(outputs: dict[str, Any]) -> set[FileRef]:
    return {names.file_ref(item) for _, _, _, item in names.output_items(outputs) if names.is_file_item(item)}


def _content_type(filename: str, served: str | None) -> str:
    # By name first: ComfyUI serves some types (HTML, SVG, ...) as octet-stream on purpose, and the
    # type stored here is what the name says the file is; serving it safely is the gateway's job.
    guessed, _ = mimetypes.guess_type(filename, strict=False)
    if guessed:
        return guessed
    if served:
        candidate = served.split(";", 1)[0].strip()
        if "/" in candidate:
            return candidate
    return "application/octet-stream"
