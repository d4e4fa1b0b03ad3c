"""ComfyUI's request gatekeeping and error rendering, as one aiohttp middleware (cheap per request).

- Origin check (default ComfyUI, no --enable-cors-header): if Host is a loopback host and Origin names a
  different host → 403 with an empty body, for HTTP and the WebSocket upgrade alike. Hostnames are not
  resolved: only IP literals and `localhost` count as loopback.
- `Sec-Fetch-Site: cross-site` → 403 (0.19.0+, so not in 0.3.64 mode).
- OPTIONS → 200 with an empty body.
- Unknown path → 404 with an empty body; known path, other method → aiohttp's 405 text.
- Any unhandled error → aiohttp's 500 text (ComfyUI lets many bad inputs end this way), logged at debug.
- While a simulated restart keeps the server down (in-app fallback only) → 503 (403 on a WS upgrade).
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable
from urllib.parse import urlparse, urlsplit

from aiohttp import web

from comfy_cloud.simulator.responses import empty, not_found, server_error, text
from comfy_cloud.simulator.state import SimState

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


def is_websocket_upgrade(request: web.Request) -> bool:
    """An upgrade to WebSocket, by the rule the HTTP layer applies (other upgrades are plain HTTP)."""
    headers = request.headers
    if headers.get("Upgrade", "").lower() != "websocket":
        return False
    connection = ",".join(headers.getall("Connection", ())).lower()
    return any(token.strip() == "upgrade" for token in connection.split(","))


def comfy_middleware(state: SimState) -> Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]:
    legacy = state.config.is_legacy

    def blocked(request: web.Request) -> bool:
        headers = request.headers
        if not origin_allowed(headers.get("Host"), headers.get("Origin")):
            return True
        return not legacy and headers.get("Sec-Fetch-Site") == "cross-site"

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        refused = state.refusing()
        if refused or blocked(request):
            return empty(503 if refused and not is_websocket_upgrade(request) else 403)
        if request.method == "OPTIONS":
            return empty(200)
        routing_error = request.match_info.http_exception
        if routing_error is not None:  # the router's own 404/405, rendered as before
            return not_found() if routing_error.status == 404 else text("405: Method Not Allowed", 405)
        try:
            return await handler(request)
        except web.HTTPException:
            raise  # aiohttp's own answers (e.g. 413, a bad WebSocket handshake)
        except Exception:
            log.debug("simulator: unhandled error on %s %s", request.method, request.path, exc_info=True)
            return server_error()

    return middleware
