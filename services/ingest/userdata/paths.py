"""Paths inside a user's data directory, checked as ComfyUI checks them (`get_request_user_filepath`),
on strings instead of a file system.

The frontend sends nested paths as one URL segment (`workflows%2Fa.json`). Starlette decodes `%2F` before
routing, so the segments are read from the raw path: `a%2Fb/move/c` is a move, `a/b` (a literal slash) is
no route at all in ComfyUI, and here too.
"""

from __future__ import annotations

import posixpath
from urllib.parse import unquote

from starlette.requests import Request

_ROOT = "/root"
_PREFIX = "/userdata/"


def resolve(path: str) -> str | None:
    """`path` relative to the user's root, normalised ("" is the root itself), or None when it leaves
    the root. ComfyUI decodes once more when the name still holds a `%`; so do we."""
    if "%" in path:
        path = unquote(path)
    if "\x00" in path:
        return None
    resolved = posixpath.normpath(posixpath.join(_ROOT, path))
    if resolved == _ROOT:
        return ""
    if not resolved.startswith(_ROOT + "/"):
        return None
    return resolved[len(_ROOT) + 1 :]


def raw_segments(request: Request) -> list[str]:
    """The percent-decoded segments after `/userdata/` of the raw request path."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    path = raw.decode("latin-1").split("?", 1)[0]
    rest = path[path.find(_PREFIX) + len(_PREFIX) :]
    return [unquote(segment) for segment in rest.split("/")]


def ancestors(path: str) -> list[str]:
    """`a/b/c.json` -> [`a`, `a/b`]: where a file would stop `path` from being written."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def hidden(relative: str) -> bool:
    """Whether a glob (`*`, `**`) skips this path: some component starts with a dot."""
    return any(part.startswith(".") for part in relative.split("/"))
