"""The simulator's aiohttp application: ComfyUI's routes, bare and under `/api` (§1.1)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from comfy_cloud.simulator import routes_admin, routes_files, routes_info, routes_jobs, routes_queue
from comfy_cloud.simulator.config import MAX_UPLOAD_SIZE, SimulatorConfig
from comfy_cloud.simulator.middleware import comfy_middleware
from comfy_cloud.simulator.responses import SIM
from comfy_cloud.simulator.state import SimState
from comfy_cloud.simulator.websocket import websocket_endpoint

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Seconds a shutdown waits for WebSocket clients to answer the close frame before cutting them off.
CLOSE_WAIT = 1.0

# (path, method, handler) of the classic routes, served bare and under /api. GET routes answer HEAD too.
CLASSIC: list[tuple[str, str, Handler]] = [
    ("/prompt", "POST", routes_queue.post_prompt),
    ("/prompt", "GET", routes_queue.get_prompt),
    ("/view", "GET", routes_files.view),
    ("/history/{prompt_id}", "GET", routes_queue.get_history_entry),
    ("/history", "GET", routes_queue.get_history),
    ("/history", "POST", routes_queue.post_history),
    ("/queue", "GET", routes_queue.get_queue),
    ("/queue", "POST", routes_queue.post_queue),
    ("/interrupt", "POST", routes_queue.post_interrupt),
    ("/free", "POST", routes_queue.post_free),
    ("/upload/image", "POST", routes_files.upload_image),
    ("/upload/mask", "POST", routes_files.upload_mask),
    ("/object_info", "GET", routes_info.object_info),
    ("/object_info/{node_class}", "GET", routes_info.object_info_class),
    ("/system_stats", "GET", routes_info.get_system_stats),
    ("/features", "GET", routes_info.get_features),
    ("/embeddings", "GET", routes_info.embeddings),
    ("/models", "GET", routes_info.models),
    ("/models/{folder}", "GET", routes_info.models_in_folder),
    ("/extensions", "GET", routes_info.extensions),
    ("/ws", "GET", websocket_endpoint),  # plain HTTP on it gets aiohttp's 400 text
]

# The jobs routes carry /api in their literal path, so ComfyUI also serves them under /api/api (§1.1).
JOBS: list[tuple[str, str, Handler]] = [
    ("/api/jobs", "GET", routes_jobs.list_jobs),
    ("/api/jobs/cancel", "POST", routes_jobs.cancel_jobs),
    ("/api/jobs/{job_id}", "GET", routes_jobs.get_job),
    ("/api/jobs/{job_id}/cancel", "POST", routes_jobs.cancel_job),
]

ADMIN: list[tuple[str, str, Handler]] = [
    ("/_sim/restart", "POST", routes_admin.restart),
    ("/_sim/drop_sockets", "POST", routes_admin.drop_sockets),
    ("/_sim/config", "POST", routes_admin.set_config),
    ("/_sim/stats", "GET", routes_admin.stats),
]


def _add_routes(router: web.UrlDispatcher, config: SimulatorConfig) -> None:
    routes = [
        (prefix + path, method, handler) for path, method, handler in CLASSIC for prefix in ("/api", "")
    ]
    if not config.is_legacy:  # the jobs API arrived in 0.6.0
        routes += [
            (prefix + path, method, handler) for path, method, handler in JOBS for prefix in ("", "/api")
        ]
    routes += ADMIN
    for path, method, handler in routes:
        if method == "GET":
            router.add_get(path, handler)  # and HEAD, as aiohttp (and so ComfyUI) does
        else:
            router.add_route(method, path, handler)


def create_app(config: SimulatorConfig | None = None, *, argv: list[str] | None = None) -> web.Application:
    """A ComfyUI simulator as an aiohttp app; its state is `app[SIM]` (a SimState).

    Each start of the app (on_startup) starts the executor; each cleanup stops it. On shutdown every
    WebSocket gets close code 1012 (service restart), as the server did before.
    """
    config = config or SimulatorConfig()
    state = SimState(config, argv)
    # client_max_size: ComfyUI's --max-upload-size default, also advertised as the max_upload_size flag.
    app = web.Application(middlewares=[comfy_middleware(state)], client_max_size=MAX_UPLOAD_SIZE)
    app[SIM] = state
    _add_routes(app.router, config)

    async def on_startup(app: web.Application) -> None:
        await state.start()

    async def on_shutdown(app: web.Application) -> None:
        await state.hub.close_all(1012, CLOSE_WAIT)

    async def on_cleanup(app: web.Application) -> None:
        await state.stop()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.on_cleanup.append(on_cleanup)
    return app
