"""Registering routes the way ComfyUI serves them (protocol reference §1.1, §9.1): classic routes both
bare and under /api, and a HEAD twin for every GET (aiohttp adds one; the twin is left out of OpenAPI)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

_HEAD_DROPS = ("response_model", "responses", "openapi_extra")


def add(
    router: APIRouter, path: str, endpoint: Callable[..., Any], method: str, name: str, **kwargs: Any
) -> None:
    router.add_api_route(path, endpoint, methods=[method], name=name, operation_id=name, **kwargs)
    if method == "GET":
        head = {k: v for k, v in kwargs.items() if k not in _HEAD_DROPS}
        router.add_api_route(
            path, endpoint, methods=["HEAD"], name=f"{name}_head", include_in_schema=False, **head
        )


def add_both(router: APIRouter, path: str, endpoint: Callable[..., Any], method: str, **kwargs: Any) -> None:
    """`path` and `/api` + `path`, one handler (distinct operation ids for the OpenAPI document)."""
    for prefix in ("", "/api"):
        add(
            router,
            prefix + path,
            endpoint,
            method,
            f"{endpoint.__name__}{'_api' if prefix else ''}",
            **kwargs,
        )


def add_api(router: APIRouter, path: str, endpoint: Callable[..., Any], method: str, **kwargs: Any) -> None:
    """A route that exists only under its own path (the jobs API, Cloud-only routes)."""
    add(router, path, endpoint, method, endpoint.__name__, **kwargs)
