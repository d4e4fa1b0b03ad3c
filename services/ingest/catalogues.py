"""The node library of the fleet: the merged catalogues of the live instances, cached in memory.

Every prompt is validated against it, so it must be current without reloading megabytes per request,
and without a query per prompt: a prompt is validated against `current()`, the library as last seen,
and the statement that stores the job checks that the live catalogues are still those (a prompt
validated against a stale library is not stored; the caller refreshes and validates again). A prompt
refused against `current()` is checked against a `refresh()`ed library before the refusal stands.
`refresh()` and `get()` read the set of live catalogue hashes and load only the object_info of hashes
not seen before; the merged view is rebuilt only when that set changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from database.engine import Database
from database.repositories.catalogues import CatalogueReadRepository


@dataclass(frozen=True)
class NodeLibrary:
    hashes: frozenset[str]
    # class_type -> NodeDef; a class offered by several catalogues takes the first by sorted hash.
    object_info: Mapping[str, Any]
    classes: Mapping[str, frozenset[str]] = field(default_factory=dict)  # hash -> its class names
    catalogues: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # hash -> object_info

    def runnable_on(self, required: Iterable[str]) -> list[str]:
        """The catalogues (hashes) that offer every required class."""
        needed = set(required)
        return sorted(h for h, names in self.classes.items() if needed <= names)

    def best_coverage(self, required: Iterable[str]) -> Mapping[str, Any]:
        """The object_info of the catalogue that offers the most of `required` ({} without any)."""
        needed = set(required)
        best: str | None = None
        for h in sorted(self.classes):
            if best is None or len(needed & self.classes[h]) > len(needed & self.classes[best]):
                best = h
        return self.catalogues.get(best, {}) if best is not None else {}


EMPTY = NodeLibrary(frozenset(), {}, {})


def merge(catalogues: Mapping[str, Mapping[str, Any]], hashes: Iterable[str] | None = None) -> NodeLibrary:
    merged: dict[str, Any] = {}
    for digest in sorted(catalogues, reverse=True):
        merged.update(catalogues[digest])  # the smallest hash is applied last and wins
    classes = {digest: frozenset(info) for digest, info in catalogues.items()}
    return NodeLibrary(frozenset(catalogues if hashes is None else hashes), merged, classes, dict(catalogues))


class CatalogueCache:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._library = EMPTY
        self._object_infos: dict[str, dict[str, Any]] = {}
        self._lock = asyncio.Lock()
        self.loads = 0  # catalogues fetched from the database (for tests and metrics)

    def current(self) -> NodeLibrary:
        """The library as last seen, without asking the database (it may be stale: see the module)."""
        return self._library

    async def get(self) -> NodeLibrary:
        """The current library (reads the live hashes)."""
        return await self.refresh()

    async def refresh(self, live: Collection[str] | None = None) -> NodeLibrary:
        """The library of the live catalogues: `live` when the caller has just read them, else read."""
        if live is None:
            async with self.database.autocommit() as session:
                live = await CatalogueReadRepository(session).live_hashes()
        live = set(live)
        if live == self._library.hashes:
            return self._library
        async with self._lock:
            if live != self._library.hashes:
                await self._rebuild(live)
            return self._library

    async def _rebuild(self, live: set[str]) -> None:
        missing = live - self._object_infos.keys()
        if missing:
            async with self.database.autocommit() as session:
                loaded = await CatalogueReadRepository(session).object_infos(missing)
            self.loads += len(loaded)
            self._object_infos.update(loaded)
        # Forget catalogues no live instance serves any more (they can be megabytes each).
        self._object_infos = {h: v for h, v in self._object_infos.items() if h in live}
        self._library = merge(self._object_infos, live)
