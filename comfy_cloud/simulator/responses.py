"""Responses shaped like aiohttp's, which is what ComfyUI clients see (§1.4)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

JSON_TYPE = "application/json; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
SERVER_ERROR_TEXT = "500 Internal Server Error\n\nServer got itself in trouble"


class BadRequestBody(Exception):
    """The body is not valid JSON: ComfyUI lets the exception escape, which aiohttp turns into a 500."""


def json_response(data: Any, status: int = 200) -> Response:
    # json.dumps default separators, as aiohttp's json_response writes them.
    return Response(json.dumps(data).encode(), status, headers={"content-type": JSON_TYPE})


def json_bytes(body: bytes, status: int = 200) -> Response:
    return Response(body, status, headers={"content-type": JSON_TYPE})


def empty(status: int = 200) -> Response:
    return Response(b"", status)


def text(body: str, status: int) -> Response:
    return Response(body.encode(), status, headers={"content-type": TEXT_TYPE})


def server_error() -> Response:
    return text(SERVER_ERROR_TEXT, 500)


def not_found() -> Response:
    return Response(b"", 404, headers={"content-type": "application/octet-stream"})


async def read_json(request: Request) -> Any:
    """`await request.json()` semantics of aiohttp: any decoding failure is an unhandled error."""
    raw = await request.body()
    try:
        return json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise BadRequestBody(str(exc)) from exc
