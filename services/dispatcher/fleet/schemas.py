"""Request and answer bodies of the fleet endpoints (see "How the services talk" in CONTRIBUTING.md)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import AnyHttpUrl, BaseModel, Field


class RegisterBody(BaseModel):
    id: uuid.UUID
    address: AnyHttpUrl = Field(description="base URL at which the dispatcher reaches the instance")
    capacity: int = Field(default=1, ge=1, description="prompts the instance runs at once")
    catalogue_hash: str = Field(min_length=1, max_length=64)
    comfyui_version: str | None = None
    system_stats: dict[str, Any] | None = None
    features: dict[str, Any] | None = None


class RegisterAnswer(BaseModel):
    heartbeat_interval: float
    lease_seconds: float


class HeartbeatBody(BaseModel):
    healthy: bool = True
    running: list[uuid.UUID] = Field(default_factory=list)


class HeartbeatAnswer(BaseModel):
    jobs: dict[uuid.UUID, str] = Field(
        description="status of each reported job that is still this instance's; a missing one is not"
    )


class InstanceInfo(BaseModel):
    id: uuid.UUID
    address: str
    state: str = Field(description="live, lost or draining; `unhealthy` when live but not taking work")
    status: str
    healthy: bool
    capacity: int
    running: int
    catalogue_hash: str | None
    comfyui_version: str | None
    registered_at: datetime
    last_heartbeat_at: datetime


class InstanceList(BaseModel):
    instances: list[InstanceInfo]
