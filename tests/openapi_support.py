"""Checks of a service's OpenAPI document, shared by the services' test_openapi modules.

- Every documented operation states its success answer: each of its 2xx/3xx responses has a description
  and either a schema for every media type or an explicit empty `content: {}` (a body-less answer such
  as ComfyUI's empty 200s, a 204, a redirect). FastAPI writes `schema: {}` for a route without a
  response model and no `content` at all for a bare `Response`: both fail.
- Every FastAPI route (HEAD twins aside) is documented, or is the hidden bare alias of a documented
  `/api` route (ComfyUI serves its classic routes both ways; the document shows the `/api` one).
  Plain Starlette routes (WebSockets, the static frontend, the docs pages) are not operations.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(METHOD, path) -> operation."""
    return {
        (method.upper(), path): operation
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }


def undocumented_answers(document: dict[str, Any]) -> list[str]:
    problems = []
    for (method, path), operation in operations(document).items():
        where = f"{method} {path}"
        successes = {s: r for s, r in operation.get("responses", {}).items() if str(s)[:1] in "23"}
        if not successes:
            problems.append(f"{where}: no 2xx/3xx response")
        for status, response in successes.items():
            if not response.get("description"):
                problems.append(f"{where} {status}: no description")
            content = response.get("content")
            if content is None:
                problems.append(f"{where} {status}: no content (media types, or `content: {{}}`)")
                continue
            for media_type, media in content.items():
                if not media.get("schema"):
                    problems.append(f"{where} {status} {media_type}: no schema")
    return problems


def unexplained_routes(app: FastAPI) -> list[str]:
    documented = set(operations(app.openapi()))
    problems = []
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute):
            continue
        path = context.path_format
        for method in sorted(context.methods - {"HEAD"}):
            if context.include_in_schema:
                continue
            if path.startswith("/api/") or (method, "/api" + path) not in documented:
                problems.append(f"{method} {path}: hidden, and not the bare alias of a documented /api route")
    return problems


def duplicate_operation_ids(document: dict[str, Any]) -> list[str]:
    ids = Counter(operation.get("operationId") for operation in operations(document).values())
    return sorted(str(operation_id) for operation_id, count in ids.items() if count > 1)
