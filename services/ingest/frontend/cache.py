"""ComfyUI's `cache_control` middleware (`middleware/cache_middleware.py`), for the frontend's files.

Scripts, stylesheets and `index*.json` must never be cached: a frontend update would otherwise mix old
and new chunks. Images are cached for a day (an hour for a 404, not at all for a temporary redirect).
A header the response already set wins.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_NO_STORE_SUFFIXES = (".js", ".css")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg", ".ico", ".apng", ".tif", ".hdr", ".exr")
_CACHEABLE = frozenset({200, 201, 202, 203, 204, 205, 206, 301, 308})
_REDIRECTS = frozenset({302, 303, 307})


def cache_control(path: str, status: int) -> str | None:
    """The Cache-Control value ComfyUI gives a response to `path`, or None."""
    name = path.rsplit("/", 1)[-1]
    if path.endswith(_NO_STORE_SUFFIXES) or (name.startswith("index") and name.endswith(".json")):
        return "no-store"
    if path.lower().endswith(_IMAGE_SUFFIXES):
        if status == 404:
            return "public, max-age=3600"
        if status in _CACHEABLE:
            return "public, max-age=86400"
        if status in _REDIRECTS:
            return "no-cache"
    return None


class CacheControl:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_cache(message: Message) -> None:
            if message["type"] == "http.response.start":
                value = cache_control(scope["path"], message["status"])
                headers = MutableHeaders(scope=message)
                if value is not None and "cache-control" not in headers:
                    headers["Cache-Control"] = value
            await send(message)

        await self.app(scope, receive, send_with_cache)
