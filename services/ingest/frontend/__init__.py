"""The stock ComfyUI web UI (`comfyui-frontend-package`, the version ComfyUI 0.33.0 pins), served at `/`.

`mount_frontend(app)` must run after every API router is included: the static files are a catch-all
mount at `/`, so routes registered later would never be reached.

What ComfyUI serves around the package, and how we answer it (protocol reference §1.2, §2.5, §5):
- `/` and `/api/` serve `index.html` with `Cache-Control: no-store, must-revalidate`, `Pragma: no-cache`,
  `Expires: 0`.
- Every other path is a file of the package's `static/` directory, with ComfyUI's cache headers.
- `/templates/index*.json` come from the workflow-templates package on a local server; a cloud without
  templates answers empty JSON (`[]`, and `{}` for the logo index) so the template browser shows none
  instead of failing. Other template files are 404.
- `/user.css` is 404 (the frontend links it; a user's own CSS is `/api/userdata/user.css`).
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from services.ingest.frontend.cache import CacheControl

log = logging.getLogger(__name__)

_INDEX_HEADERS = {"Cache-Control": "no-store, must-revalidate", "Pragma": "no-cache", "Expires": "0"}


def static_dir() -> Path | None:
    """The package's web root, or None when the `frontend` extra is not installed."""
    try:
        root = Path(str(resources.files("comfyui_frontend_package") / "static"))
    except ModuleNotFoundError:
        return None
    return root if (root / "index.html").is_file() else None


def mount_frontend(app: FastAPI, root: Path | None = None) -> bool:
    """Serve the UI at `/`; False (and a log line) when no frontend is installed."""
    root = root or static_dir()
    if root is None:
        log.warning("comfyui-frontend-package is not installed: the web UI is not served (API only)")
        return False
    index = root / "index.html"

    async def index_html(_: object) -> Response:
        return FileResponse(index, media_type="text/html", headers=_INDEX_HEADERS)

    async def template(request: object) -> Response:
        name = request.path_params["name"]  # type: ignore[attr-defined]
        if name == "index_logo.json":
            return JSONResponse({})
        if name.startswith("index") and name.endswith(".json"):
            return JSONResponse([])
        return Response(status_code=404)

    async def not_found(_: object) -> Response:
        return Response(status_code=404)

    routes = [
        Route("/", index_html, methods=["GET", "HEAD"]),
        Route("/api/", index_html, methods=["GET", "HEAD"]),
        Route("/user.css", not_found, methods=["GET", "HEAD"]),
        Route("/templates/{name:path}", template, methods=["GET", "HEAD"]),
        Mount("/", app=_StaticFiles(directory=root, follow_symlink=False)),
    ]
    for route in routes:
        app.router.routes.append(_cached(route))
    return True


class _StaticFiles(StaticFiles):
    """Misses answered here (an empty 404, as ComfyUI), not raised to the app's JSON error handler:
    the response must pass through the cache policy, and `/api/<unknown>` must not look like an API error."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            return Response(status_code=exc.status_code, headers=exc.headers)


def _cached(route: Route | Mount) -> Route | Mount:
    """The same route with ComfyUI's Cache-Control policy on its responses."""
    if isinstance(route, Mount):
        return Mount(route.path, app=CacheControl(route.app))
    return Route(route.path, CacheControl(route.app), methods=list(route.methods or ()))
