"""One socket's bounded queue of outgoing frames.

A socket that reads slowly must never stall the others: frames wait here. Past the soft bounds
(`max_frames`, `max_bytes`) the least valuable queued frame goes first: previews, then progress updates,
each superseded by the next one. Frames that may not be dropped (status, executing, executed, ...) grow
the queue up to the hard bounds (`HARD_FACTOR` times the soft ones), which absorb a burst; past them the
socket is hopelessly behind and `put` says so. The caller closes it; the client reconnects and learns
the current state from the on-connect snapshot. (A socket whose every send blocks is closed sooner, by
the writer's send timeout.)

A queued `status` frame is superseded by the next one: it only carries the queue count, and a client
wants the latest. Without this a burst of submissions (1,000 prompts at once: 1,000 status frames)
filled a briskly reading socket's queue to its hard bound and closed it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

PREVIEW_RANK = 0  # binary previews
PROGRESS_RANK = 1  # progress, progress_state, progress text
RANKS = (PREVIEW_RANK, PROGRESS_RANK)
HARD_FACTOR = 8


@dataclass(slots=True)
class Frame:
    """A text or binary frame, or a `status` frame whose count is still being computed (`status`)."""

    text: str | None = None
    data: bytes | None = None
    status: asyncio.Future[int] | None = None
    rank: int | None = None  # None: never dropped
    superseded: bool = False  # a later status frame replaced this one: skipped, not sent

    @property
    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        return len(self.text) if self.text is not None else 64


class Outbox:
    def __init__(self, max_frames: int, max_bytes: int) -> None:
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self._frames: deque[Frame] = deque()
        self._bytes = 0
        self._ready = asyncio.Event()
        self.dropped = 0
        self._queued_status: Frame | None = None  # the status frame waiting to be sent, if any
        self._superseded = 0  # superseded frames still in _frames

    def __len__(self) -> int:
        return len(self._frames) - self._superseded

    def put(self, frame: Frame, *, front: bool = False) -> bool:
        """Queue a frame; False when the socket is hopelessly behind (the frame is not queued)."""
        if frame.status is not None:
            self._supersede_queued_status()
        while self._over(frame, 1):
            if not self._drop_one(frame):
                if frame.rank is not None:
                    self.dropped += 1
                    return True  # the incoming frame was the least valuable: dropped
                break  # nothing may be dropped: grow towards the hard bounds
        if self._over(frame, HARD_FACTOR):
            return False
        if front:
            self._frames.appendleft(frame)
        else:
            self._frames.append(frame)
        if frame.status is not None:
            self._queued_status = frame
        self._bytes += frame.size
        self._ready.set()
        return True

    def _supersede_queued_status(self) -> None:
        """Mark the queued status frame as skipped (O(1): get() discards it when it comes up)."""
        old, self._queued_status = self._queued_status, None
        if old is not None:
            old.superseded = True
            self._superseded += 1
            self._bytes -= old.size
            self.dropped += 1

    def _over(self, incoming: Frame, factor: int) -> bool:
        return len(self) > 0 and (
            len(self) >= self.max_frames * factor or self._bytes + incoming.size > self.max_bytes * factor
        )

    def _drop_one(self, incoming: Frame) -> bool:
        """Drop the oldest queued frame of the lowest rank below or equal to the incoming frame's."""
        for rank in RANKS:
            if incoming.rank is not None and incoming.rank < rank:
                return False  # everything droppable queued is worth more than the incoming frame
            for index, queued in enumerate(self._frames):
                if queued.rank == rank:
                    del self._frames[index]
                    self._bytes -= queued.size
                    self.dropped += 1
                    return True
        return False

    async def get(self) -> Frame:
        while True:
            while not self._frames:
                self._ready.clear()
                await self._ready.wait()
            frame = self._frames.popleft()
            if frame.superseded:
                self._superseded -= 1
                continue
            if frame is self._queued_status:
                self._queued_status = None
            self._bytes -= frame.size
            return frame
