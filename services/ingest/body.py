"""Reading request bodies safely: a size cap enforced while streaming, and JSON that PostgreSQL can store.

ComfyUI answers malformed JSON with a bare 500; we answer 400 (or 413) in the route's style. Python's
json module also accepts documents that would fail later, deep inside a request, as 500s: NaN and
Infinity (JSONB refuses them), NUL characters and unpaired surrogates in strings (JSONB and TEXT refuse
them) and nesting deep enough to exhaust the recursion limit. We refuse those at the door.
"""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request

from services.ingest.errors import InvalidBody, PayloadTooLarge

MAX_DEPTH = 128  # UI workflows nest about 10 levels deep; subgraphs add a few


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidBody("Invalid Content-Length header") from None
        if size > limit:
            raise PayloadTooLarge(f"Request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:  # chunked bodies declare no length
            raise PayloadTooLarge(f"Request body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


_EMPTY = object()


async def read_json(request: Request, limit: int, *, empty: Any = _EMPTY) -> Any:
    """The JSON body; `empty` is returned for an empty body when given, else an empty body is an error."""
    raw = await read_body(request, limit)
    if not raw.strip():
        if empty is _EMPTY:
            raise InvalidBody("Request body must be JSON")
        return empty
    return parse_json(raw)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:40]}")
    return value


def parse_json(raw: bytes | str) -> Any:
    try:
        value = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise InvalidBody("Request body is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, huge integers
        raise InvalidBody(f"Request body is not valid JSON: {exc}") from None
    check_storable(value)
    return value


def check_storable(value: Any) -> None:
    """Raise InvalidBody unless `value` can be stored as JSONB (depth, strings), walking iteratively."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            check_text(item)
        elif isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise InvalidBody(f"Request body is nested more than {MAX_DEPTH} levels deep")
            if isinstance(item, dict):
                for key, child in item.items():
                    check_text(key)
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)


def check_text(text: str) -> None:
    if "\x00" in text:
        raise InvalidBody("Strings must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidBody("Strings must be valid Unicode (unpaired surrogate)") from None


def clean_param(value: str | None) -> str | None:
    """A query parameter that will reach SQL: NUL is refused (PostgreSQL text cannot hold it)."""
    if value is not None and "\x00" in value:
        raise InvalidBody("Parameters must not contain NUL characters")
    return value
