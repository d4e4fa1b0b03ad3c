"""Routing helpers for the routes that imitate ComfyUI's files, user data and node catalogue.

ComfyUI answers these routes' errors in its own, non-uniform styles (protocol reference §1.4): most file
routes send a bare status with an empty body, the user-data listing sends plain text, a few internal
routes send `{"error": ...}`. `ComfyBodyRoute` renders typed errors (`comfy_cloud.errors.AppError`) in
the style the error class names, right at the route, so no app-wide handler has to know these shapes.
401 is left to the app (authentication answers it the same way everywhere).

`classic(router)` serves a router both under `/api` and bare, as ComfyUI's `add_routes()` does (the bare
aliases are left out of the OpenAPI document); `get(router, path)` registers a GET with its HEAD twin
(aiohttp adds one for every GET).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from comfy_cloud.errors import AppError


class Body(StrEnum):
    EMPTY = "empty"  # a bare status (ComfyUI's file routes)
    TEXT = "text"  # text/plain (ComfyUI's user-data routes)
    JSON = "json"  # {"error": message} (ComfyUI's internal routes)


class ComfyError(AppError):
    """An error answered in one of ComfyUI's body styles; `body` says which."""

    body = Body.EMPTY


def render_error(exc: AppError) -> Response:
    style = getattr(exc, "body", Body.EMPTY)
    if style is Body.TEXT:
        return PlainTextResponse(exc.message, status_code=exc.status_code)
    if style is Body.JSON:
        return JSONResponse({"error": exc.message}, status_code=exc.status_code)
    return Response(status_code=exc.status_code)


class ComfyBodyRoute(APIRoute):
    """Renders AppError (and malformed parameters, as 400) in ComfyUI's style for this route."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except AppError as exc:
                if exc.status_code == 401:
                    raise  # authentication's own style, rendered by the app
                return render_error(exc)
            except RequestValidationError:
                # ComfyUI has no 422; a malformed parameter is a bad request, with ComfyUI's bare body.
                return Response(status_code=400)

        return route


def comfy_router(**kwargs: Any) -> APIRouter:
    return APIRouter(route_class=ComfyBodyRoute, **kwargs)


def classic(router: APIRouter) -> APIRouter:
    """`router`'s routes under `/api` (documented) and bare (ComfyUI's aliases, hidden from OpenAPI)."""
    both = APIRouter()
    both.include_router(router, prefix="/api")
    both.include_router(router, include_in_schema=False)
    return both


def get(router: APIRouter, path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`@router.get(path)` plus an undocumented HEAD twin."""
    hidden = {"response_model", "responses", "summary", "include_in_schema"}

    def register(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        router.add_api_route(path, endpoint, methods=["GET"], **kwargs)
        head = {k: v for k, v in kwargs.items() if k not in hidden}
        router.add_api_route(
            path, endpoint, methods=["HEAD"], include_in_schema=False, response_model=None, **head
        )
        return endpoint

    return register
