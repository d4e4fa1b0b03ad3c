"""`/object_info` for one caller: the fleet's merged node library (`services.ingest.catalogues`, cached per
set of live catalogues) with the file combos listing the caller's own inputs.

The library is about 1.6 MB of JSON. Serialising it per request would cost tens of milliseconds, so each
node definition is serialised once per library (the "prepared" catalogue) and a response is the join of
those fragments, with freshly serialised definitions only for the few personalised classes.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from database.repositories.user_files import UserFileRepository
from services.ingest.catalogue.personalize import (
    FileCombo,
    InputFile,
    find_file_combos,
    personalize,
    strip_worker_inputs,
)
from services.ingest.catalogues import NodeLibrary


@dataclass(frozen=True)
class PreparedCatalogue:
    hashes: frozenset[str]
    object_info: Mapping[str, Any]
    fragments: dict[str, str]  # class_type -> its NodeDef as JSON
    combos: list[FileCombo]


def prepare(library: NodeLibrary) -> PreparedCatalogue:
    """Blocking (about a second of CPU for a large catalogue): run it in a thread."""
    fragments: dict[str, str] = {}
    cleaned: dict[str, Any] = {}
    for class_type, node in library.object_info.items():
        fragment = json.dumps(node)
        if '"cc-inputs' in fragment:
            node = strip_worker_inputs(node)
            fragment = json.dumps(node)
        cleaned[class_type] = node
        fragments[class_type] = fragment
    return PreparedCatalogue(library.hashes, cleaned, fragments, find_file_combos(cleaned))


class PreparedCatalogueCache:
    """The prepared form of the current library; rebuilt when the set of live catalogues changes."""

    def __init__(self) -> None:
        self._prepared: PreparedCatalogue | None = None
        self._lock = asyncio.Lock()

    async def get(self, library: NodeLibrary) -> PreparedCatalogue:
        prepared = self._prepared
        if prepared is not None and prepared.hashes == library.hashes:
            return prepared
        async with self._lock:
            if self._prepared is None or self._prepared.hashes != library.hashes:
                self._prepared = await asyncio.to_thread(prepare, library)
            return self._prepared


async def user_inputs(session: AsyncSession, user_id: uuid.UUID) -> list[InputFile]:
    rows = await UserFileRepository(session).listing(user_id, "input")
    return [InputFile(row.subfolder, row.filename) for row in rows]


def render(prepared: PreparedCatalogue, files: list[InputFile], only: str | None = None) -> bytes:
    """The `/object_info` body for a caller whose input files are `files` (one class with `only`)."""
    combos = [c for c in prepared.combos if only is None or c.class_type == only]
    own = personalize(prepared.object_info, combos, files)
    classes = [only] if only is not None else list(prepared.fragments)
    parts = [
        f"{json.dumps(name)}: {json.dumps(own[name]) if name in own else prepared.fragments[name]}"
        for name in classes
        if name in prepared.fragments
    ]
    return ("{" + ", ".join(parts) + "}").encode()
