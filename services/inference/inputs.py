"""Materialize a job's inputs: the user's files its prompt names are put into ComfyUI's input directory
through `/upload/image` (so a remote ComfyUI works like a local one), under the content-addressed name
`cc-inputs/<sha256[:32]><ext>`, and the prompt is rewritten to that name.

A prompt names a file as `"x.png"`, `"sub/dir/x.png"` or `"x.png [output]"` (an earlier output of the
owner); each resolves against the owner's own files only.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comfy_cloud.comfyui.validation import file_inputs
from comfy_cloud.storage import ObjectNotFound, Storage
from database.engine import Database
from database.models import File
from database.repositories.results import ResultRepository
from services.inference import names
from services.inference.comfyui.client import ComfyUIClient
from services.inference.names import FileRef
from services.inference.outputs import StoredFile

log = logging.getLogger(__name__)


class MissingInput(Exception):
    """A file the prompt names is not among the owner's files (or its content is gone)."""

    def __init__(self, message: str, node_id: str, node_type: str | None) -> None:
        super().__init__(message)
        self.node_id = node_id
        self.node_type = node_type


@dataclass(slots=True)
class Materialized:
    prompt: dict[str, Any]
    # ComfyUI's name of each uploaded input -> the user's file (outputs may point back at inputs).
    uploaded: dict[FileRef, StoredFile] = field(default_factory=dict)


async def materialize(
    *,
    prompt: dict[str, Any],
    object_info: Mapping[str, dict[str, Any]],
    user_id: uuid.UUID,
    job_id: uuid.UUID,
    db: Database,
    storage: Storage,
    comfy: ComfyUIClient,
) -> Materialized:
    wanted = file_inputs(prompt, object_info)
    if not wanted:
        return Materialized(prompt)  # nothing to rename: the prompt goes as it is (no copy)
    result = Materialized(copy.deepcopy(prompt))
    files = await _resolve(db, user_id, job_id, prompt, wanted)
    done: dict[str, str] = {}  # sha256 -> the name ComfyUI has it under
    for (node_id, input_name, _value), file in zip(wanted, files, strict=True):
        if file.content_hash not in done:
            done[file.content_hash] = await _upload(storage, comfy, file, node_id, prompt)
        comfy_name = done[file.content_hash]
        result.prompt[node_id]["inputs"][input_name] = f"{names.INPUT_SUBFOLDER}/{comfy_name}"
        ref = FileRef("input", names.INPUT_SUBFOLDER, comfy_name)
        result.uploaded[ref] = StoredFile(FileRef(file.type, file.subfolder, file.filename), file.id)
        log.info("input %s of node %s given to ComfyUI as %s", input_name, node_id, comfy_name)
    return result


async def _resolve(
    db: Database,
    user_id: uuid.UUID,
    job_id: uuid.UUID,
    prompt: dict[str, Any],
    wanted: list[tuple[str, str, str]],
) -> list[File]:
    """The owner's file behind each input, linked to the job as its input; MissingInput if absent."""
    found: list[File] = []
    async with db.session() as session:
        results = ResultRepository(session)
        for node_id, input_name, value in wanted:
            ref = names.parse_input_name(value)
            file = await results.get_file(user_id, ref.type, ref.subfolder, ref.filename)
            if file is None:
                raise MissingInput(
                    f"Input file not found: {value!r} (node {node_id}, input {input_name!r}); "
                    "upload it first with /api/upload/image",
                    node_id,
                    prompt[node_id].get("class_type"),
                )
            await results.link_file(job_id, file.id, "input")
            found.append(file)
    return found


async def _upload(
    storage: Storage, comfy: ComfyUIClient, file: File, node_id: str, prompt: dict[str, Any]
) -> str:
    name = names.input_name(file.content_hash, file.filename)
    try:
        path = storage.local_path(file.storage_key)
        if path is not None and path.is_file():
            await comfy.upload_input(path, name, names.INPUT_SUBFOLDER, file.content_type)
            return name
        with tempfile.TemporaryDirectory(prefix="cc-input-") as tmp:
            spooled = Path(tmp) / name
            await _download(storage, file.storage_key, spooled)
            await comfy.upload_input(spooled, name, names.INPUT_SUBFOLDER, file.content_type)
    except ObjectNotFound:
        raise MissingInput(
            f"The stored content of input file {file.filename!r} is missing",
            node_id,
            prompt[node_id].get("class_type"),
        ) from None
    return name


async def _download(storage: Storage, key: str, target: Path) -> None:
    """Spool a stored object to a local file (remote storage), chunk by chunk."""
    stream = await storage.open_stream(key)
    with target.open("wb") as out:
        async for chunk in stream:
            out.write(chunk)
