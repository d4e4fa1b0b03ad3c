"""Response models shared by the route families (errors) and helpers to document them."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class CloudError(BaseModel):
    """Comfy Cloud's error body."""

    code: str
    message: str


class ComfyError(BaseModel):
    """ComfyUI's plain error body (jobs API and other ComfyUI routes)."""

    error: str


class PromptErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    message: str
    details: str
    extra_info: dict[str, Any]


class PromptErrorResponse(BaseModel):
    """ComfyUI's POST /prompt error body."""

    error: PromptErrorDetail
    node_errors: dict[str, Any]


UNAUTHORIZED: dict[int | str, dict[str, Any]] = {
    401: {"model": CloudError, "description": "No valid credentials"}
}


def comfy_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {**UNAUTHORIZED, **{s: {"model": ComfyError} for s in statuses}}


def cloud_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {**UNAUTHORIZED, **{s: {"model": CloudError} for s in statuses}}


def json_body_doc(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    """`openapi_extra` documenting a JSON body that the endpoint reads itself (to answer malformed
    bodies in its own error style instead of FastAPI's 422)."""
    return {
        "requestBody": {
            "required": required,
            "content": {
                "application/json": {
                    "schema": model.model_json_schema(ref_template="#/components/schemas/{model}")
                }
            },
        }
    }


def empty(description: str, status: int = 200) -> dict[int | str, dict[str, Any]]:
    """A success answered without a body (`content: {}` states it in the OpenAPI document)."""
    return {status: {"description": description, "content": {}}}


EMPTY_OK = empty("Empty body (as ComfyUI answers)")

BINARY: dict[str, Any] = {"type": "string", "format": "binary"}  # the schema of raw bytes
