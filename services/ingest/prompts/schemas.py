"""Bodies of POST /prompt and GET /prompt (ComfyUI's shapes; protocol reference §3.1)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PromptRequest(BaseModel):
    """ComfyUI's submit body. `number` and `front` order the caller's own queue only."""

    model_config = ConfigDict(extra="allow")

    prompt: dict[str, Any] = Field(description="API-format graph: {node_id: {class_type, inputs, _meta?}}")
    client_id: str | None = Field(default=None, description="echoed in extra_data; events go to all sockets")
    prompt_id: str | None = Field(default=None, description="canonical lowercase UUID; a repeat is refused")
    number: float | None = None
    front: bool | None = None
    extra_data: dict[str, Any] | None = Field(
        default=None, description="api_key_comfy_org / auth_token_comfy_org are sealed, never stored in clear"
    )
    partial_execution_targets: list[str] | None = None


class PromptResponse(BaseModel):
    prompt_id: str
    number: int | float
    node_errors: dict[str, Any]


class ExecInfo(BaseModel):
    queue_remaining: int


class PromptQueueInfo(BaseModel):
    exec_info: ExecInfo
