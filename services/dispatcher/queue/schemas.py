"""Answer bodies of the queue endpoints."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field


class DispatchAnswer(BaseModel):
    assigned: int = Field(description="jobs handed to instances by the pass this request triggered")


class CancelAnswer(BaseModel):
    cancelled: bool = Field(description="the job is now cancelled or being cancelled")
    status: str


class WaitingForCapability(BaseModel):
    count: int
    job_ids: list[uuid.UUID] = Field(description="the oldest ones (at most 100)")


class QueueStats(BaseModel):
    depth: dict[str, int] = Field(description="jobs per non-final status")
    waiting_for_capability: WaitingForCapability
