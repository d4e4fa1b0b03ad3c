"""A small TTL + LRU map for credential lookups (per process; entries expire on their own)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")
_MISS = object()


class TTLCache(Generic[K, V]):
    def __init__(
        self, ttl: float, max_size: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.max_size = max_size
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K, default: object = _MISS) -> V | object:
        """The live value, or `default` (the module's miss marker unless given)."""
        entry = self._entries.get(key)
        if entry is None:
            return default
        if entry[0] <= self._clock():
            del self._entries[key]
            return default
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        if self.ttl <= 0:
            return
        self._entries[key] = (self._clock() + (self.ttl if ttl is None else ttl), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_size:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


MISS = _MISS
