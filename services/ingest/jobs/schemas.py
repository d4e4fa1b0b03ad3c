"""Jobs and history bodies: ComfyUI's jobs API and history (protocol reference §3.3, §3.4) and Comfy
Cloud's job status and history_v2 (cloud API reference §1.2, §3). Optional keys are omitted, not null."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel

from services.ingest.queue.schemas import QueueItem


class PreviewOutput(BaseModel):
    """An output item (filename, subfolder, type) or a text preview (content, truncated)."""

    model_config = ConfigDict(extra="allow")

    nodeId: str
    mediaType: str
    filename: str | None = None
    subfolder: str | None = None
    type: str | None = None
    content: str | None = None
    truncated: bool | None = None


class JobListItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    status: str = Field(description="pending | in_progress | completed | failed | cancelled")
    priority: int | float | None = Field(default=None, description="the queue number")
    create_time: int = Field(description="epoch milliseconds")
    execution_start_time: int | None = None
    execution_end_time: int | None = None
    execution_error: dict[str, Any] | None = Field(default=None, description="ComfyUI's execution_error")
    outputs_count: int | None = None
    previewable_outputs_count: int | None = None
    preview_output: PreviewOutput | None = None
    workflow_id: str | None = None


class JobWorkflow(BaseModel):
    prompt: dict[str, Any]
    extra_data: dict[str, Any]


class JobDetail(JobListItem):
    outputs: dict[str, Any] | None = None
    execution_status: dict[str, Any] | None = None
    workflow: JobWorkflow | None = None
    update_time: int | None = None


class Pagination(BaseModel):
    offset: int
    limit: int
    total: int
    has_more: bool


class JobsListResponse(BaseModel):
    jobs: list[JobListItem]
    pagination: Pagination


class CancelResponse(BaseModel):
    cancelled: bool


class CancelJobsRequest(BaseModel):
    job_ids: list[str] = Field(description="canonical lowercase UUIDs")


class JobsCancelError(BaseModel):
    error: str
    invalid_ids: list[Any] | None = None


class JobStatusResponse(BaseModel):
    """Raw Comfy Cloud states: queued_waiting, allocated, executing, cancel_requested, success, error,
    cancelled."""

    id: str
    status: str
    created_at: str
    updated_at: str
    last_state_update: str | None = None
    assigned_inference: str | None = None
    error_message: str | None = Field(default=None, description="JSON text of the error")


class HistoryEntry(BaseModel):
    prompt: QueueItem
    outputs: dict[str, Any]
    status: dict[str, Any]
    meta: dict[str, Any]


class HistoryResponse(RootModel[dict[str, HistoryEntry]]):
    """{prompt_id: entry}, oldest first; `{}` for an unknown id."""


class HistoryManageRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    delete: list[str] | None = None
    clear: bool | None = None


class HistoryV2Prompt(BaseModel):
    priority: int | float
    prompt_id: str
    extra_data: dict[str, Any]


class HistoryV2Entry(BaseModel):
    prompt_id: str
    create_time: int | None = None
    workflow_id: str | None = None
    prompt: HistoryV2Prompt
    outputs: dict[str, Any]
    status: dict[str, Any]
    meta: dict[str, Any]


class HistoryV2Response(BaseModel):
    history: list[HistoryV2Entry] = Field(description="newest first")


class HistoryV2DetailPrompt(HistoryV2Prompt):
    prompt: dict[str, Any]
    outputs_to_execute: list[str]


class HistoryV2Detail(BaseModel):
    prompt: HistoryV2DetailPrompt
    outputs: dict[str, Any]
    status: dict[str, Any]
    meta: dict[str, Any]


class HistoryV2DetailResponse(RootModel[dict[str, HistoryV2Detail]]):
    """{prompt_id: entry}."""
