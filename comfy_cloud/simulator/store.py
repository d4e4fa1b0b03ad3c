"""The prompt queue and the history, with ComfyUI's ordering and notification quirks.

- Pending prompts live in a heap keyed by (number, prompt_id); `/queue` lists the heap as is (§2.1).
- Every change (put, get, task done, delete, clear) calls `on_change`, which broadcasts `status`.
  Deleting the last pending prompt wipes the queue first, so it notifies twice, as ComfyUI does.
- History is in memory, insertion-ordered, capped at 10 000 entries; re-using a prompt_id replaces the
  entry in place.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_HISTORY = 10_000


@dataclass
class QueueItem:
    number: int | float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    def as_list(self) -> list[Any]:
        """The `[number, prompt_id, prompt, extra_data, outputs_to_execute]` tuple of /queue and history."""
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


class PromptStore:
    def __init__(self, on_change: Callable[[], None]) -> None:
        self._on_change = on_change
        self._heap: list[tuple[int | float, str, int, QueueItem]] = []
        self._seq = itertools.count()
        self._ready = asyncio.Event()
        self.running: QueueItem | None = None
        self.history: dict[str, dict[str, Any]] = {}
        self.counter = 0  # the next automatic queue number

    # -- queue ---------------------------------------------------------------------------------------
    def next_number(self, front: bool) -> int:
        number = -self.counter if front else self.counter
        self.counter += 1
        return number

    def put(self, item: QueueItem) -> None:
        heapq.heappush(self._heap, (item.number, item.prompt_id, next(self._seq), item))
        self._ready.set()
        self._on_change()

    async def get(self) -> QueueItem:
        while not self._heap:
            self._ready.clear()
            await self._ready.wait()
        item = heapq.heappop(self._heap)[3]
        self.running = item
        self._on_change()
        return item

    def task_done(self, item: QueueItem, status: dict[str, Any], result: dict[str, Any]) -> None:
        if len(self.history) > MAX_HISTORY:
            self.history.pop(next(iter(self.history)))
        entry = {"prompt": item.as_list(), "outputs": {}, "status": status}
        entry.update(result)
        self.history[item.prompt_id] = entry
        self.running = None
        self._on_change()

    def remaining(self) -> int:
        return len(self._heap) + (1 if self.running is not None else 0)

    def pending(self) -> list[QueueItem]:
        """Pending items in heap order (not sorted), as ComfyUI lists them."""
        return [entry[3] for entry in self._heap]

    def pending_ids(self) -> list[str]:
        return [entry[1] for entry in self._heap]

    def delete(self, prompt_id: str) -> bool:
        for index, entry in enumerate(self._heap):
            if entry[1] == prompt_id:
                if len(self._heap) == 1:
                    self.wipe()
                else:
                    self._heap.pop(index)
                    heapq.heapify(self._heap)
                self._on_change()
                return True
        return False

    def wipe(self) -> None:
        self._heap.clear()
        self._on_change()

    # -- history -------------------------------------------------------------------------------------
    def get_history(self, max_items: int | None, offset: int) -> dict[str, Any]:
        """`GET /history`: only max_items → the last N; with offset → from that index (§2.2)."""
        if offset < 0 and max_items is not None:
            offset = len(self.history) - max_items
        out: dict[str, Any] = {}
        for index, key in enumerate(self.history):
            if index >= offset:
                out[key] = self.history[key]
                if max_items is not None and len(out) >= max_items:
                    break
        return out

    def history_entry(self, prompt_id: str) -> dict[str, Any]:
        """The entry itself, not a copy: serialize it before anything else runs (GET /history/{id})."""
        entry = self.history.get(prompt_id)
        return {} if entry is None else {prompt_id: entry}

    def delete_history(self, prompt_id: str) -> None:
        self.history.pop(prompt_id, None)

    def clear_history(self) -> None:
        self.history.clear()
