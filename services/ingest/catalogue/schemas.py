"""Response shapes of the catalogue routes, for the OpenAPI document (bodies follow ComfyUI 0.33.0)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Features(BaseModel):
    model_config = ConfigDict(extra="allow")

    supports_preview_metadata: bool
    max_upload_size: int
    max_concurrent_jobs: int
    node_replacements: bool
    assets: bool


class SystemInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    os: str
    ram_total: int
    ram_free: int
    comfyui_version: str
    python_version: str
    pytorch_version: str
    embedded_python: bool
    argv: list[str]


class SystemStats(BaseModel):
    system: SystemInfo
    devices: list[dict[str, Any]]


class ModelFolder(BaseModel):
    name: str
    folders: list[str]
    extensions: list[str]


class ModelListing(BaseModel):
    name: str
    pathIndex: int


class TerminalSize(BaseModel):
    cols: int | None
    rows: int | None


class LogsRaw(BaseModel):
    entries: list[dict[str, str]]
    size: TerminalSize
