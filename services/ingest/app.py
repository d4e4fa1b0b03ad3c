"""The ingest service: create_app() builds the FastAPI app; its lifespan owns every resource.

Routes: this package's prompts/, queue/, jobs/, ws/ and health; files/, userdata/, catalogue/ and
frontend/ join when their modules exist (each exposes `router`, the frontend `mount_frontend(app)`).
Errors render in the style of the route that raised them (see errors.py); anything unexpected becomes a
logged 500 (middleware.GuardMiddleware).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from comfy_cloud.broadcast import open_broadcaster
from comfy_cloud.broadcast.base import Broadcaster
from comfy_cloud.comfyui.validation import PromptError
from comfy_cloud.errors import AppError
from comfy_cloud.health import health_router
from comfy_cloud.secrets import Sealer
from comfy_cloud.storage import Storage, open_storage
from database.engine import Database
from database.repositories.jobs import count_queue_remaining
from services.ingest.auth.service import Authenticator
from services.ingest.catalogues import CatalogueCache
from services.ingest.config import IngestSettings
from services.ingest.errors import error_body, error_code, style_of
from services.ingest.middleware import BodyLimitMiddleware, GuardMiddleware
from services.ingest.prompts import endpoints as prompt_endpoints
from services.ingest.state import IngestState
from services.ingest.ws.hub import Hub

log = logging.getLogger(__name__)

# Our routers, then the other ingest packages' (optional until they exist).
_ROUTERS = (
    "services.ingest.prompts.endpoints",
    "services.ingest.queue.endpoints",
    "services.ingest.jobs.endpoints",
    "services.ingest.jobs.history_endpoints",
    "services.ingest.ws.endpoints",
)
_OPTIONAL_ROUTERS = (
    "services.ingest.files",
    "services.ingest.userdata",
    "services.ingest.catalogue",
)
_FRONTEND = "services.ingest.frontend"


def create_app(
    settings: IngestSettings,
    *,
    broadcaster: Broadcaster | None = None,
    dispatcher: Any = None,
    firebase: Any = None,
    storage: Storage | None = None,
) -> FastAPI:
    """`broadcaster`, `dispatcher`, `firebase` and `storage` replace the configured ones (tests); the app
    then starts and closes the given broadcaster like its own."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = await _open(settings, broadcaster, dispatcher, firebase, storage)
        app.state.ingest = state
        app.state.database = state.database  # the health check and other packages
        app.state.authenticator = state.authenticator  # what auth.dependencies reads
        try:
            await state.hub.start()
            yield
        finally:
            await _close(state)

    app = FastAPI(
        title="comfy-cloud ingest",
        description="ComfyUI's API and Comfy Cloud's, over a fleet of ComfyUI workers.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    _install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_upload_size)
    app.add_middleware(GuardMiddleware)
    app.include_router(health_router(lambda: _checks(app)))
    for module in _ROUTERS:
        _include(app, importlib.import_module(module))
    # Ahead of every FastAPI route: the busiest route, served without FastAPI's per-request work.
    app.router.routes[:0] = prompt_endpoints.direct_routes
    for module in _OPTIONAL_ROUTERS:
        found = _import_optional(module)
        if found is not None:
            _include(app, found)
    frontend = _import_optional(_FRONTEND)
    if frontend is not None and hasattr(frontend, "mount_frontend"):
        frontend.mount_frontend(app)  # last: it may serve "/" and static files
    return app


def _include(app: FastAPI, module: Any) -> None:
    for name in ("router", "cloud_router"):
        router = getattr(module, name, None)
        if router is not None:
            app.include_router(router)


def _import_optional(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            return None  # that package is not there (yet)
        raise  # it exists but one of its imports is missing: a real error


def _checks(app: FastAPI) -> dict[str, Any]:
    state: IngestState | None = getattr(app.state, "ingest", None)
    if state is None:
        return {}

    async def broadcaster_ready() -> bool:
        return state.broadcaster.ready

    return {"database": state.database.ping, "broadcast": broadcaster_ready}


async def _open(
    settings: IngestSettings, broadcaster: Broadcaster | None, dispatcher: Any, firebase: Any, storage: Any
) -> IngestState:
    database = Database(settings.database_url, application_name="comfy-cloud-ingest")
    if broadcaster is None:
        broadcaster = open_broadcaster(settings.broadcast_url, settings.database_url)
    await broadcaster.start()
    if dispatcher is None:
        from comfy_cloud.clients.dispatcher import DispatcherClient

        dispatcher = DispatcherClient(settings.dispatcher_url)
    if firebase is None and settings.firebase_project_id:
        from services.ingest.auth.firebase import FirebaseTokenVerifier

        firebase = FirebaseTokenVerifier(settings.firebase_project_id)
    if settings.ingest_dev_mode:
        log.warning(
            "development mode: requests without credentials act as the user %r", settings.ingest_dev_user
        )

    async def count_queue(user_id: Any) -> int:
        # One statement on the asyncpg fast path (~50 us of CPU against ~300 through a session).
        async with database.raw() as conn:
            return await count_queue_remaining(conn, user_id)

    return IngestState(
        settings=settings,
        database=database,
        broadcaster=broadcaster,
        catalogues=CatalogueCache(database),
        dispatcher=dispatcher,
        authenticator=Authenticator(
            database,
            firebase=firebase,
            dev_user=settings.ingest_dev_user if settings.ingest_dev_mode else None,
            key_cache_ttl=settings.api_key_cache_ttl,
        ),
        hub=Hub(broadcaster, count_queue),
        sealer=Sealer(settings.secret_key) if settings.secret_key else None,
        storage=storage if storage is not None else _open_storage(settings.storage_url),
    )


def _open_storage(url: str) -> Storage | None:
    try:
        return open_storage(url)
    except ValueError as exc:
        log.error("STORAGE_URL cannot be used (%s): uploads and /view will answer 503", exc)
        return None


async def _close(state: IngestState) -> None:
    await state.hub.stop()
    for closer in (
        state.broadcaster.close,
        getattr(state.dispatcher, "aclose", None),
        state.database.dispose,
    ):
        if closer is None:
            continue
        try:
            await closer()
        except Exception:
            log.exception("error while shutting down")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PromptError)
    async def prompt_error(request: Request, exc: PromptError) -> JSONResponse:
        return JSONResponse(exc.body, status_code=exc.status)

    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> JSONResponse:
        status = exc.status_code
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        body = error_body(style_of(request), status, exc.message, error_code(status, exc))
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        message = "; ".join(_describe(e) for e in exc.errors()) or "Invalid request"
        return JSONResponse(error_body(style_of(request), 400, message), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "Error"
        body = error_body(style_of(request), exc.status_code, message)
        return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
    return f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid"))
