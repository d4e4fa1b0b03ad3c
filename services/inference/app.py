"""The inference service: create_app() builds the FastAPI app; its lifespan owns the Instance.

Routes (Cloud-only, so errors are `{code, message}`):
- `POST /jobs` {"job_id", "attempt"} -> 202, 409 when full or not assigned here (the hand-off).
- `POST /jobs/{id}/interrupt` {"reason": "cancel"|"timeout"} -> 202 {"interrupting": bool}.
- `GET /status`, `GET /health`, `GET /ready` (503 while ComfyUI or the database is down).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


class HandOffAnswer(BaseModel):
    accepted: bool
    job_id: uuid.UUID


class InterruptAnswer(BaseModel):
    interrupting: bool = Field(description="false once the job is past the point where stopping matters")


class ErrorAnswer(BaseModel):
    code: str = Field(description="full, not_assigned, not_found, ...")
    message: str


class ComfyUIStatus(BaseModel):
    model_config = ConfigDict(extra="allow")

    url: str
    connected: bool
    jobs_api: bool | None = Field(description="ComfyUI serves /api/jobs (null until known)")
    supervised: bool
    restarts: int | None = Field(description="restarts of the supervised ComfyUI (null: not supervised)")


class RunningJob(BaseModel):
    model_config = ConfigDict(extra="allow")

    job_id: str
    phase: str
    attempt: str


class InstanceStatus(BaseModel):
    model_config = ConfigDict(extra="allow")

    instance_id: str
    address: str | None
    comfyui: ComfyUIStatus
    registered: bool | None = Field(description="with the dispatcher (null: no dispatcher configured)")
    healthy: bool | None
    capacity: int
    running: list[RunningJob]
    finished: int = Field(description="jobs this instance has finished since it started")


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class DirectRoute(APIRoute):
    """A route documented from its endpoint's signature like any other, whose requests go straight
    to the handler given with `served_by`: no dependency solving nor response model on a per-job
    path (the hand-off: ~30 us of CPU against ~90 us through FastAPI's handler). Errors still reach
    the app's exception handlers."""

    def get_route_handler(self) -> Handler:
        direct: Handler | None = getattr(self.endpoint, "served_by", None)
        return direct if direct is not None else super().get_route_handler()


def served_by(handler: Handler) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a DirectRoute endpoint (which then only documents the route) with its real handler."""

    def mark(endpoint: Callable[..., Any]) -> Callable[..., Any]:
        endpoint.served_by = handler  # type: ignore[attr-defined]
        return endpoint

    return mark


async def _hand_off(request: Request) -> Response:
    try:
        body = HandOff.model_validate_json(await request.body())
    except ValidationError as exc:  # answered as FastAPI answers an invalid body (422)
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None
    await _instance(request).worker.accept(body.job_id, body.attempt)
    answer = HandOffAnswer(accepted=True, job_id=body.job_id)
    return Response(answer.model_dump_json(), status_code=202, media_type="application/json")


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

    per_job = APIRouter(route_class=DirectRoute)

    @per_job.post(
        "/jobs",
        status_code=202,
        responses={409: {"model": ErrorAnswer, "description": "full, or the job is not assigned here"}},
    )
    @served_by(_hand_off)
    async def hand_off(body: HandOff) -> HandOffAnswer:
        raise AssertionError("documentation only: _hand_off serves this route")

    app.include_router(per_job)

    @app.post(
        "/jobs/{job_id}/interrupt",
        status_code=202,
        responses={404: {"model": ErrorAnswer, "description": "the job does not run here"}},
    )
    async def interrupt(
        job_id: uuid.UUID, request: Request, body: InterruptRequest | None = None
    ) -> InterruptAnswer:
        reason = body.reason if body is not None else "cancel"
        return InterruptAnswer(interrupting=await _instance(request).worker.interrupt(job_id, reason))

    @app.get("/status", response_model=InstanceStatus)
    async def status(request: Request) -> JSONResponse:
        # The instance reports its own state: the model documents it, it is not applied.
        return JSONResponse(_instance(request).status())

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
