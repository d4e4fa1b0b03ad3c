"""Errors of the ingest routes and how each route family renders them.

A route imitates either ComfyUI or Comfy Cloud, and answers errors in that style:
- `prompt`: ComfyUI's POST /prompt body `{"error": {type, message, details, extra_info}, "node_errors": {}}`;
- `comfy`: the other ComfyUI routes, `{"error": "<message>"}` (the jobs API's style; ComfyUI answers most
  malformed bodies with a bare 500, which we never do);
- `cloud`: Comfy Cloud's `{"code", "message"}`.
A route's family is the `error_style` attribute of its route class (`ComfyRoute`, `PromptRoute`,
`CloudRoute`); routes without one render as `comfy`. 401 is always Cloud style: it is Cloud's auth.

The files, user-data and catalogue routes imitate ComfyUI more closely (protocol reference §1.4): most file
routes answer a bare status with an empty body, the user-data listing plain text, a few internal routes
`{"error": ...}`. They raise `ComfyError`s, whose `body` names the style, and their route class
(`routing.ComfyBodyRoute`) renders them at the route.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import HTTPConnection

from comfy_cloud.errors import AppError, BadRequest, NotFound


class ErrorStyle(StrEnum):
    PROMPT = "prompt"
    COMFY = "comfy"
    CLOUD = "cloud"


class Body(StrEnum):
    """The body of a `ComfyError`'s answer."""

    EMPTY = "empty"  # a bare status (ComfyUI's file routes)
    TEXT = "text"  # text/plain (ComfyUI's user-data routes)
    JSON = "json"  # {"error": message} (ComfyUI's internal routes)


class ComfyError(AppError):
    """An error answered in one of ComfyUI's body styles; `body` says which."""

    body = Body.EMPTY


class ComfyRoute(APIRoute):
    error_style = ErrorStyle.COMFY


class PromptRoute(APIRoute):
    error_style = ErrorStyle.PROMPT


class CloudRoute(APIRoute):
    error_style = ErrorStyle.CLOUD


class Unauthorized(AppError):
    """Missing or invalid credentials."""

    status_code = 401
    code = "unauthorized"


class PayloadTooLarge(AppError):
    """Request body too large."""

    status_code = 413
    code = "payload_too_large"


class InvalidBody(BadRequest):
    """The request body is not what this route accepts."""

    code = "invalid_request"


class JobNotFound(NotFound):
    """Job not found."""

    code = "not_found"


_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    422: "invalid_request",
    500: "internal_error",
    503: "service_unavailable",
}


def error_code(status: int, error: BaseException | None = None) -> str:
    code = getattr(error, "code", None)
    return code if isinstance(code, str) else _CODES.get(status, "error")


def style_of(connection: HTTPConnection) -> ErrorStyle:
    route = connection.scope.get("route")
    return ErrorStyle(getattr(route, "error_style", ErrorStyle.COMFY))


def error_body(style: ErrorStyle, status: int, message: str, code: str | None = None) -> dict[str, Any]:
    """The body of an error in one family's style."""
    if status == 401 or style is ErrorStyle.CLOUD:
        return {"code": code or _CODES.get(status, "error"), "message": message}
    if style is ErrorStyle.PROMPT:
        kind = "server_error" if status >= 500 else "invalid_prompt"
        error = {"type": kind, "message": message, "details": "", "extra_info": {}}
        return {"error": error, "node_errors": {}}
    return {"error": message}
