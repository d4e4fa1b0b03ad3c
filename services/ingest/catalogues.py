"""The node library of the fleet: the merged catalogues of the live instances, cached in memory.

Every prompt is validated against it, so it must be current without reloading megabytes per request:
each lookup asks the database only for the set of live catalogue hashes, and loads the object_info of
hashes it has not seen. The merged view is rebuilt only when that set changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

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

    async def get(self, session: AsyncSession | None = None, *, live: set[str] | None = None) -> NodeLibrary:
        """The current library; `session` lets a request ask within its own transaction (one fewer
        checkout and commit per prompt) instead of a session of its own, and `live` passes the live
        hashes when the caller has just read them (CatalogueReadRepository.routing)."""
        if session is None:
            async with self.database.session() as own:
                return await self.get(own, live=live)
        if live is None:
            live = await CatalogueReadRepository(session).live_hashes()
        if live == self._library.hashes:
            return self._library
        async with self._lock:
            if live != self._library.hashes:
                await self._rebuild(session, live)
            return self._library

    async def _rebuild(self, session: AsyncSession, live: set[str]) -> None:
        missing = live - self._object_infos.keys()
        if missing:
            loaded = await CatalogueReadRepository(session).object_infos(missing)
            self.loads += len(loaded)
            self._object_infos.update(loaded)
        # Forget catalogues no live instance serves any more (they can be megabytes each).
        self._object_infos = {h: v for h, v in self._object_infos.items() if h in live}
        self._library = merge(self._object_infos, live)
