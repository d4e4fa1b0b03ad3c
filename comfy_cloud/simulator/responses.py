"""Responses shaped like aiohttp's, which is what ComfyUI clients see (§1.4), and request helpers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from comfy_cloud.simulator.state import SimState

JSON_TYPE = "application/json; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
SERVER_ERROR_TEXT = "500 Internal Server Error\n\nServer got itself in trouble"


# Where the app keeps its SimState (`app[SIM]`).
SIM: web.AppKey[SimState] = web.AppKey("sim")


def sim_state(request: web.Request) -> SimState:
    return request.app[SIM]


class BadRequestBody(Exception):
    """The body is not valid JSON: ComfyUI lets the exception escape, which aiohttp turns into a 500."""


def json_response(data: Any, status: int = 200) -> web.Response:
    # json.dumps default separators, as aiohttp's json_response writes them.
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": JSON_TYPE})


def json_bytes(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, headers={"Content-Type": JSON_TYPE})


def empty(status: int = 200) -> web.Response:
    # No body, so aiohttp adds no Content-Type (ComfyUI's bare statuses).
    return web.Response(status=status)


def text(body: str, status: int) -> web.Response:
    return web.Response(body=body.encode(), status=status, headers={"Content-Type": TEXT_TYPE})


def server_error() -> web.Response:
    return text(SERVER_ERROR_TEXT, 500)


def not_found() -> web.Response:
    return web.Response(status=404, headers={"Content-Type": "application/octet-stream"})


async def read_json(request: web.Request) -> Any:
    """`await request.json()` semantics of aiohttp: any decoding failure is an unhandled error."""
    raw = await request.read()
    try:
        return json.loads(raw)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        raise BadRequestBody(str(exc)) from exc
