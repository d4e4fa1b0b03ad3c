"""ComfyUI's request gatekeeping and error rendering, as one plain ASGI middleware (cheap per request).

- Origin check (default ComfyUI, no --enable-cors-header): if Host is a loopback host and Origin names a
  different host → 403 with an empty body, for HTTP and the WebSocket upgrade alike. Hostnames are not
  resolved: only IP literals and `localhost` count as loopback.
- `Sec-Fetch-Site: cross-site` → 403 (0.19.0+, so not in 0.3.64 mode).
- OPTIONS → 200 with an empty body.
- Any unhandled error → aiohttp's 500 text (ComfyUI lets many bad inputs end this way).
- While a simulated restart keeps the server down (in-app fallback only) → 503.
"""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import urlparse, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from comfy_cloud.simulator.responses import SERVER_ERROR_TEXT, TEXT_TYPE
from comfy_cloud.simulator.state import SimState

log = logging.getLogger(__name__)


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_allowed(host: str | None, origin: str | None) -> bool:
    """ComfyUI's origin_only_middleware decision."""
    if not host or not origin:
        return True
    try:
        parsed = urlparse(origin)
        host_parsed = urlsplit("//" + host.lower())
        origin_port, host_port = parsed.port, host_parsed.port
    except ValueError:
        return False  # ComfyUI fails on a malformed port too
    host_domain: str | None = host.lower()
    origin_domain: str | None = parsed.netloc.lower()
    if origin_port is None:  # a port-less side is compared by hostname only
        host_domain = host_parsed.hostname
    if host_port is None:
        origin_domain = parsed.hostname
    if is_loopback(host_parsed.hostname) and host_domain and origin_domain:
        return host_domain == origin_domain
    return True


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


async def _respond(send: Send, status: int, body: bytes = b"", content_type: str | None = None) -> None:
    headers = [(b"content-length", str(len(body)).encode())]
    if content_type:
        headers.append((b"content-type", content_type.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _refuse_websocket(receive: Receive, send: Send) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.close", "code": 1008})  # before accept: the server answers 403


class ComfyMiddleware:
    def __init__(self, app: ASGIApp, state: SimState) -> None:
        self.app = app
        self.state = state

    def _blocked(self, scope: Scope) -> bool:
        if not origin_allowed(_header(scope, b"host"), _header(scope, b"origin")):
            return True
        return not self.state.config.is_legacy and _header(scope, b"sec-fetch-site") == "cross-site"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refused = self.state.refusing()
        if refused or self._blocked(scope):
            if kind == "websocket":
                await _refuse_websocket(receive, send)
            else:
                await _respond(send, 503 if refused else 403)
            return
        if kind == "http" and scope["method"] == "OPTIONS":
            await _respond(send, 200)
            return
        if kind == "websocket":
            # The server's own send callable: its transport lets /_sim/drop_sockets cut the connection.
            scope["simulator.server_send"] = send
            await self.app(scope, receive, send)
            return
        await self._guarded(scope, receive, send)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.debug("simulator: unhandled error on %s %s", scope["method"], scope["path"], exc_info=True)
            if started:
                raise
            await _respond(send, 500, SERVER_ERROR_TEXT.encode(), TEXT_TYPE)
