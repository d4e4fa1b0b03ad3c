"""The dispatcher service: create_app() builds the FastAPI app; its lifespan owns every resource.

Several replicas may run against one database: every claim, lease and deadline statement is safe under
concurrency (row locks with SKIP LOCKED, conditional updates), and no replica keeps state that another
needs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from comfy_cloud.clients.http import client_timeout
from comfy_cloud.clients.inference import InferenceClient
from comfy_cloud.errors import AppError
from comfy_cloud.health import health_router
from database.engine import Database
from services.dispatcher.config import DispatcherSettings
from services.dispatcher.errors import render_app_error
from services.dispatcher.events import Publisher, StatusEvents
from services.dispatcher.fleet.endpoints import router as fleet_router
from services.dispatcher.queue.endpoints import FAST_ROUTES
from services.dispatcher.queue.endpoints import router as queue_router
from services.dispatcher.state import DispatcherState


def create_app(
    settings: DispatcherSettings,
    *,
    publisher: Publisher | None = None,
    inference: InferenceClient | None = None,
) -> FastAPI:
    """`publisher` and `inference` replace the configured broadcaster and instance client (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            database = Database(settings.database_url, application_name="comfy-cloud-dispatcher")
            stack.push_async_callback(database.dispose)
            events = StatusEvents(publisher or await _open_broadcaster(stack, settings))
            state = DispatcherState.build(
                settings, database, inference or await _open_inference(stack, settings), events
            )
            app.state.dispatcher = state
            state.start()
            stack.push_async_callback(state.stop)
            yield

    app = FastAPI(title="comfy-cloud dispatcher", lifespan=lifespan)
    app.state.settings = settings
    app.add_exception_handler(AppError, render_app_error)
    app.include_router(health_router(lambda: _checks(app)))
    app.include_router(fleet_router)
    app.include_router(queue_router)
    app.router.routes[:0] = FAST_ROUTES  # matched first: they bypass FastAPI's per-request work
    return app


def _checks(app: FastAPI) -> dict[str, object]:
    state: DispatcherState = app.state.dispatcher

    async def loops() -> bool:
        return state.running()

    return {"database": state.database.ping, "scheduler": loops}


async def _open_broadcaster(stack: AsyncExitStack, settings: DispatcherSettings) -> Publisher:
    from comfy_cloud.broadcast import open_broadcaster

    # The dispatcher only publishes status changes: no LISTEN connection of its own.
    broadcaster = open_broadcaster(settings.broadcast_url, settings.database_url, listen=False)
    await broadcaster.start()
    stack.push_async_callback(broadcaster.close)
    return broadcaster


async def _open_inference(stack: AsyncExitStack, settings: DispatcherSettings) -> InferenceClient:
    # No pool timeout: the scheduler bounds the calls in flight (handoff_concurrency) itself.
    timeout = client_timeout(connect=2.0, read=settings.handoff_timeout, pool=None)
    client = InferenceClient(timeout=timeout)
    stack.push_async_callback(client.aclose)
    return client
