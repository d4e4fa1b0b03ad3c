"""The simulator's ASGI application: ComfyUI's routes, bare and under `/api` (§1.1)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

from comfy_cloud.simulator import routes_admin, routes_files, routes_info, routes_jobs, routes_queue
from comfy_cloud.simulator.config import SimulatorConfig
from comfy_cloud.simulator.middleware import ComfyMiddleware
from comfy_cloud.simulator.responses import not_found, text
from comfy_cloud.simulator.state import SimState
from comfy_cloud.simulator.websocket import websocket_endpoint, websocket_without_upgrade

Handler = Callable[[Request], Any]

# (path, methods, handler) of the classic routes, served bare and under /api. Hot paths first.
CLASSIC: list[tuple[str, list[str], Handler]] = [
    ("/prompt", ["POST"], routes_queue.post_prompt),
    ("/prompt", ["GET"], routes_queue.get_prompt),
    ("/view", ["GET"], routes_files.view),
    ("/history/{prompt_id}", ["GET"], routes_queue.get_history_entry),
    ("/history", ["GET"], routes_queue.get_history),
    ("/history", ["POST"], routes_queue.post_history),
    ("/queue", ["GET"], routes_queue.get_queue),
    ("/queue", ["POST"], routes_queue.post_queue),
    ("/interrupt", ["POST"], routes_queue.post_interrupt),
    ("/free", ["POST"], routes_queue.post_free),
    ("/upload/image", ["POST"], routes_files.upload_image),
    ("/upload/mask", ["POST"], routes_files.upload_mask),
    ("/object_info", ["GET"], routes_info.object_info),
    ("/object_info/{node_class}", ["GET"], routes_info.object_info_class),
    ("/system_stats", ["GET"], routes_info.get_system_stats),
    ("/features", ["GET"], routes_info.get_features),
    ("/embeddings", ["GET"], routes_info.embeddings),
    ("/models", ["GET"], routes_info.models),
    ("/models/{folder}", ["GET"], routes_info.models_in_folder),
    ("/extensions", ["GET"], routes_info.extensions),
]

# The jobs routes carry /api in their literal path, so ComfyUI also serves them under /api/api (§1.1).
JOBS: list[tuple[str, list[str], Handler]] = [
    ("/api/jobs", ["GET"], routes_jobs.list_jobs),
    ("/api/jobs/cancel", ["POST"], routes_jobs.cancel_jobs),
    ("/api/jobs/{job_id}", ["GET"], routes_jobs.get_job),
    ("/api/jobs/{job_id}/cancel", ["POST"], routes_jobs.cancel_job),
]

ADMIN: list[tuple[str, list[str], Handler]] = [
    ("/_sim/restart", ["POST"], routes_admin.restart),
    ("/_sim/drop_sockets", ["POST"], routes_admin.drop_sockets),
    ("/_sim/config", ["POST"], routes_admin.set_config),
    ("/_sim/stats", ["GET"], routes_admin.stats),
]


def _routes(config: SimulatorConfig) -> list[BaseRoute]:
    routes: list[BaseRoute] = [
        WebSocketRoute("/ws", websocket_endpoint),
        WebSocketRoute("/api/ws", websocket_endpoint),
        Route("/ws", websocket_without_upgrade, methods=["GET"]),
        Route("/api/ws", websocket_without_upgrade, methods=["GET"]),
    ]
    for path, methods, handler in CLASSIC:
        routes.append(Route("/api" + path, handler, methods=methods))
        routes.append(Route(path, handler, methods=methods))
    if not config.is_legacy:  # the jobs API arrived in 0.6.0
        for path, methods, handler in JOBS:
            routes.append(Route(path, handler, methods=methods))
            routes.append(Route("/api" + path, handler, methods=methods))
    routes.extend(Route(path, handler, methods=methods) for path, methods, handler in ADMIN)
    return routes


async def _not_found(request: Request, exc: Exception) -> Response:
    return not_found()


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return text("405: Method Not Allowed", 405)


def create_app(config: SimulatorConfig | None = None, *, argv: list[str] | None = None) -> Starlette:
    """A ComfyUI simulator as an ASGI app; its state is `app.state.sim` (a SimState)."""
    config = config or SimulatorConfig()
    state = SimState(config, argv)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await state.start()
        try:
            yield
        finally:
            await state.stop()

    app = Starlette(
        routes=_routes(config),
        middleware=[Middleware(ComfyMiddleware, state=state)],
        exception_handlers={404: _not_found, 405: _not_allowed},
        lifespan=lifespan,
    )
    app.state.sim = state
    return app
