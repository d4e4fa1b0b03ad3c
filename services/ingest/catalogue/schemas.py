"""Response shapes of the catalogue routes, for the OpenAPI document (bodies follow ComfyUI 0.33.0)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class NodeInputs(BaseModel):
    """A node class's INPUT_TYPES(): each input is `[type, options]` (options optional), `type` being a type
    name or, for a combo, the list of its choices; hidden inputs may be a bare type name."""

    model_config = ConfigDict(extra="allow")

    required: dict[str, list[Any]] = Field(default_factory=dict)
    optional: dict[str, list[Any]] = Field(default_factory=dict)
    hidden: dict[str, list[Any] | str] = Field(default_factory=dict)


class NodeDef(BaseModel):
    """One node class, as ComfyUI's `/object_info` describes it. Fields that newer ComfyUI versions add are
    passed through as the workers report them (the catalogue routes answer pre-serialised JSON: this model
    documents it, it is not applied)."""

    model_config = ConfigDict(extra="allow")

    input: NodeInputs
    input_order: dict[str, list[str]]
    output: list[str | list[Any]] = Field(description="output types (a combo output: its choices)")
    output_is_list: list[bool]
    output_name: list[str]
    name: str
    display_name: str | None
    description: str
    python_module: str
    category: str
    output_node: bool
    output_tooltips: list[str | None] = Field(default_factory=list)
    is_input_list: bool = False
    has_intermediate_output: bool = False
    search_aliases: list[str] | None = None
    essentials_category: str | None = None
    experimental: bool = False
    deprecated: bool = False
    dev_only: bool = False
    api_node: bool = False


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
