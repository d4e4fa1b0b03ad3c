"""The inference service: create_app() builds the FastAPI app; its lifespan owns the Instance.

Routes (Cloud-only, so errors are `{code, message}`):
- `POST /jobs` {"job_id", "attempt"} -> 202, 409 when full or not assigned here (the hand-off).
- `POST /jobs/{id}/interrupt` {"reason": "cancel"|"timeout"} -> 202 {"interrupting": bool}.
- `GET /status`, `GET /health`, `GET /ready` (503 while ComfyUI or the database is down).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from comfy_cloud.broadcast import Broadcaster
from comfy_cloud.clients.dispatcher import DispatcherClient
from comfy_cloud.errors import AppError
from comfy_cloud.health import health_router
from comfy_cloud.storage import Storage
from services.inference.config import InferenceSettings
from services.inference.instance import Instance
from services.inference.worker import InstanceFull, JobNotHere, NotAssignedHere

_CODES: dict[type[AppError], str] = {
    InstanceFull: "full",
    NotAssignedHere: "not_assigned",
    JobNotHere: "not_found",
}


class HandOff(BaseModel):
    job_id: uuid.UUID
    attempt: int


class InterruptRequest(BaseModel):
    reason: Literal["cancel", "timeout"] = "cancel"


def create_app(
    settings: InferenceSettings,
    *,
    storage: Storage | None = None,
    broadcaster: Broadcaster | None = None,
    dispatcher: DispatcherClient | None = None,
) -> FastAPI:
    """`storage`, `broadcaster` and `dispatcher` replace the configured ones (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        instance = Instance(settings, storage=storage, broadcaster=broadcaster, dispatcher=dispatcher)
        app.state.instance = instance
        await instance.start()
        try:
            yield
        finally:
            await instance.stop()

    app = FastAPI(title="comfy-cloud inference", lifespan=lifespan)
    app.state.settings = settings

    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> JSONResponse:
        code = _CODES.get(type(exc), type(exc).__name__)
        return JSONResponse({"code": code, "message": exc.message}, status_code=exc.status_code)

    @app.post("/jobs", status_code=202)
    async def hand_off(body: HandOff, request: Request) -> dict[str, Any]:
        await _instance(request).worker.accept(body.job_id, body.attempt)
        return {"accepted": True, "job_id": str(body.job_id)}

    @app.post("/jobs/{job_id}/interrupt", status_code=202)
    async def interrupt(
        job_id: uuid.UUID, request: Request, body: InterruptRequest | None = None
    ) -> dict[str, Any]:
        reason = body.reason if body is not None else "cancel"
        interrupting = await _instance(request).worker.interrupt(job_id, reason)
        return {"interrupting": interrupting}

    @app.get("/status")
    async def status(request: Request) -> dict[str, Any]:
        return _instance(request).status()

    app.include_router(
        health_router(
            lambda: {
                "database": app.state.instance.db.ping,
                "comfyui": app.state.instance.comfyui_ready,
            }
        )
    )
    return app


def _instance(request: Request) -> Instance:
    return request.app.state.instance
