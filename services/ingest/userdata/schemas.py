"""Response shapes of the users, settings and userdata routes (ComfyUI's; `/api/user` is Comfy Cloud's)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class UsersConfig(BaseModel):
    storage: Literal["server"] = "server"
    migrated: bool = Field(True, description="single-user style: each credential is one user")


class CloudUser(BaseModel):
    id: str
    name: str
    email: str | None
    status: Literal["active"] = "active"


class FileInfo(BaseModel):
    """`full_info` entry: times are epoch milliseconds."""

    path: str
    size: int
    modified: int
    created: int


class V2Entry(BaseModel):
    """`/v2/userdata` entry: files carry size and `modified` in epoch seconds (float)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    path: str
    type: Literal["file", "directory"]
    size: int | None = None
    modified: float | None = None


Listing = list[str] | list[list[str]] | list[FileInfo]
Settings = dict[str, Any]
