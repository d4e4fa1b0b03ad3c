"""Where a prompt is in ComfyUI right now, read over HTTP (the truth when the socket missed events).

Order matters (design notes, "Reading two sources non-atomically"): a prompt moves from the queue to
history and never back, so the queue is read first and history second; read the other way round, a
prompt finishing between the two reads would look unknown. `/api/jobs/{id}` (0.6.0+) answers from both
at once and is asked first where it exists. UNKNOWN is never final by itself: the caller re-checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from services.inference.comfyui.client import ComfyUIClient


class Remote(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"
    UNKNOWN = "unknown"  # not queued, not running, no history: forgotten (restart) or never queued


@dataclass(frozen=True, slots=True)
class RemoteState:
    status: Remote
    history: dict[str, Any] | None = None  # the history entry once FINISHED


_JOB_STATUS = {"pending": Remote.PENDING, "in_progress": Remote.RUNNING}


async def read_state(client: ComfyUIClient, prompt_id: str) -> RemoteState:
    """Raises ComfyUIUnavailable when ComfyUI does not answer."""
    if client.has_jobs_api is not False:
        job = await client.job(prompt_id)
        if job is not None:
            status = _JOB_STATUS.get(str(job.get("status")))
            if status is not None:
                return RemoteState(status)
            # Finished: the outputs come from the history entry itself.
            entry = await client.history_entry(prompt_id)
            if entry is not None:
                return RemoteState(Remote.FINISHED, entry)
    queue = await client.queue()
    if prompt_id in queue.running:
        return RemoteState(Remote.RUNNING)
    if prompt_id in queue.pending:
        return RemoteState(Remote.PENDING)
    entry = await client.history_entry(prompt_id)
    if entry is not None:
        return RemoteState(Remote.FINISHED, entry)
    return RemoteState(Remote.UNKNOWN)
