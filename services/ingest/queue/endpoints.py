"""GET/POST /queue and POST /interrupt (bare and /api)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.ingest import cancellation
from services.ingest.auth.dependencies import CurrentUser
from services.ingest.body import InvalidBody, parse_json, read_body, read_json
from services.ingest.errors import ComfyRoute
from services.ingest.queue import service
from services.ingest.queue.schemas import InterruptRequest, QueueManageRequest, QueueResponse
from services.ingest.routing import classic, get
from services.ingest.schemas import EMPTY_OK, comfy_errors, json_body_doc
from services.ingest.state import State

_routes = APIRouter(route_class=ComfyRoute, tags=["queue"])


@get(_routes, "/queue", response_model=QueueResponse, responses=comfy_errors())
async def get_queue(user: CurrentUser, state: State) -> JSONResponse:
    """The caller's running and pending jobs as ComfyUI queue items."""
    return JSONResponse(await service.get_queue(state, user))


@_routes.post(
    "/queue",
    response_class=Response,
    responses={**EMPTY_OK, **comfy_errors(400, 413)},
    openapi_extra=json_body_doc(QueueManageRequest),
)
async def post_queue(request: Request, user: CurrentUser, state: State) -> Response:
    """Cancel the caller's pending jobs: `{"delete": [ids]}` or `{"clear": true}`."""
    body = await read_json(request, state.settings.max_json_body)
    await service.manage(state, user, body)
    return Response(status_code=200)


@_routes.post(
    "/interrupt",
    response_class=Response,
    responses={**EMPTY_OK, **comfy_errors(413, 503)},
    openapi_extra=json_body_doc(InterruptRequest, required=False),
)
async def post_interrupt(request: Request, user: CurrentUser, state: State) -> Response:
    """Interrupt the caller's running jobs, or only `prompt_id` (a no-op when it is not running)."""
    raw = await read_body(request, state.settings.max_json_body)
    try:
        body = parse_json(raw) if raw.strip() else {}
    except InvalidBody:
        body = {}  # ComfyUI: an unreadable body is a plain interrupt
    prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
    await cancellation.interrupt(state, user, prompt_id)
    return Response(status_code=200)


router = classic(_routes, document_bare=True)
