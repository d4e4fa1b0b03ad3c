"""/queue and /interrupt bodies (ComfyUI's shapes; protocol reference §2.1, §3.2)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# [number, prompt_id, prompt, extra_data, outputs_to_execute]; ComfyUI's 6th element (sensitive data)
# never exists here. `number` orders the caller's own queue; -n for jobs queued with `front`.
QueueItem = tuple[int | float, str, dict[str, Any], dict[str, Any], list[str]]


class QueueResponse(BaseModel):
    queue_running: list[QueueItem]
    queue_pending: list[QueueItem] = Field(description="in the order they will be dispatched")


class QueueManageRequest(BaseModel):
    """Cancels the caller's pending jobs only; running ones continue (use /interrupt)."""

    model_config = ConfigDict(extra="allow")

    delete: list[str] | None = None
    clear: bool | None = None


class InterruptRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt_id: str | None = Field(default=None, description="only this job, if it is running")
