"""History: ComfyUI's /history (bare and /api) and Comfy Cloud's /api/history_v2."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from services.ingest.auth.dependencies import CurrentUser
from services.ingest.body import read_json
from services.ingest.errors import CloudRoute, ComfyRoute, InvalidBody, NotFound
from services.ingest.jobs import service, views
from services.ingest.jobs.schemas import (
    HistoryManageRequest,
    HistoryResponse,
    HistoryV2DetailResponse,
    HistoryV2Response,
)
from services.ingest.routing import classic, get
from services.ingest.schemas import EMPTY_OK, cloud_errors, comfy_errors, json_body_doc
from services.ingest.state import State

_routes = APIRouter(route_class=ComfyRoute, tags=["history"])
cloud_router = APIRouter(route_class=CloudRoute, tags=["history"])


def _int_param(request: Request, name: str) -> int | None:
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return max(0, int(raw))
    except ValueError:
        raise InvalidBody(f"{name} must be an integer") from None


@get(_routes, "/history", response_model=HistoryResponse, responses=comfy_errors(400))
async def get_history(request: Request, user: CurrentUser, state: State) -> JSONResponse:
    """Finished jobs, oldest first: `max_items` alone gives the last N; `offset` starts there."""
    max_items, offset = _int_param(request, "max_items"), _int_param(request, "offset")
    return JSONResponse(await service.history(state, user, max_items, offset))


@get(_routes, "/history/{prompt_id}", response_model=HistoryResponse, responses=comfy_errors())
async def get_history_item(prompt_id: str, user: CurrentUser, state: State) -> JSONResponse:
    """`{prompt_id: entry}`, or `{}` while the job runs and for unknown ids."""
    found = await service.finished_job(state, user, prompt_id)
    if found is None:
        return JSONResponse({})
    return JSONResponse({str(found.job.id): views.history_entry(found.job, found.history)})


@_routes.post(
    "/history",
    response_class=Response,
    responses={**EMPTY_OK, **comfy_errors(400, 413)},
    openapi_extra=json_body_doc(HistoryManageRequest),
)
async def post_history(request: Request, user: CurrentUser, state: State) -> Response:
    """Hide finished jobs from history: `{"delete": [ids]}` or `{"clear": true}`."""
    body = await read_json(request, state.settings.max_json_body)
    if not isinstance(body, dict):
        raise InvalidBody("Request body must be a JSON object with 'delete' and/or 'clear'")
    await service.hide_history(state, user, body)
    return Response(status_code=200)


router = classic(_routes, document_bare=True)


@get(
    cloud_router,
    "/api/history_v2",
    operation_id="history_v2",
    response_model=HistoryV2Response,
    responses=cloud_errors(400),
)
async def history_v2(request: Request, user: CurrentUser, state: State) -> JSONResponse:
    """Finished jobs, newest first (deprecated by Comfy Cloud in favour of /api/jobs)."""
    max_items, offset = _int_param(request, "max_items"), _int_param(request, "offset")
    return JSONResponse(await service.history_v2(state, user, max_items, offset or 0))


@get(
    cloud_router,
    "/api/history_v2/{prompt_id}",
    operation_id="history_v2_item",
    response_model=HistoryV2DetailResponse,
    responses=cloud_errors(404),
)
async def history_v2_item(prompt_id: str, user: CurrentUser, state: State) -> JSONResponse:
    found = await service.finished_job(state, user, prompt_id)
    if found is None:
        raise NotFound("History not found")
    return JSONResponse({str(found.job.id): views.history_v2_detail(found.job, found.history)})
