"""The jobs API: /api/jobs, /api/jobs/{id}, the cancel routes (ComfyUI's shapes and error strings), and
Cloud's /api/job/{id}/status."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from comfy_cloud.comfyui.jobs import JobsQueryError, parse_jobs_query
from comfy_cloud.comfyui.validation import is_canonical_uuid
from services.ingest.auth.dependencies import CurrentUser
from services.ingest.body import read_json
from services.ingest.cancellation import cancel_job
from services.ingest.errors import CloudRoute, ComfyRoute, InvalidBody, JobNotFound
from services.ingest.jobs import service, views
from services.ingest.jobs.schemas import (
    CancelJobsRequest,
    CancelResponse,
    JobDetail,
    JobsCancelError,
    JobsListResponse,
    JobStatusResponse,
)
from services.ingest.routing import get
from services.ingest.schemas import UNAUTHORIZED, cloud_errors, comfy_errors, json_body_doc
from services.ingest.state import State

router = APIRouter(route_class=ComfyRoute, tags=["jobs"])
cloud_router = APIRouter(route_class=CloudRoute, tags=["jobs"])

MAX_CANCEL_IDS = 1000


@get(
    router,
    "/api/jobs",
    operation_id="list_jobs",
    response_model=JobsListResponse,
    responses=comfy_errors(400),
)
async def list_jobs(request: Request, user: CurrentUser, state: State) -> JSONResponse:
    """The caller's jobs: `status` (comma list), `workflow_id`, `output_type`, `sort_by`, `sort_order`,
    `offset`, `limit` (default 100, at most 1000; always a number in the answer)."""
    try:
        query = parse_jobs_query(request.query_params, cloud=True)
    except JobsQueryError as exc:
        raise InvalidBody(exc.message) from None
    return JSONResponse(await service.list_jobs(state, user, query))


@get(
    router,
    "/api/jobs/{job_id}",
    operation_id="get_job",
    response_model=JobDetail,
    responses=comfy_errors(404),
)
async def get_job(job_id: str, user: CurrentUser, state: State) -> JSONResponse:
    found = await service.get_job(state, user, job_id)
    if found is None:
        raise JobNotFound("Job not found")
    return JSONResponse(views.job_item(found.job, found.history, detail=True))


@router.post(
    "/api/jobs/{job_id}/cancel",
    operation_id="cancel_one",
    response_model=CancelResponse,
    responses=comfy_errors(503),
)
async def cancel_one(job_id: str, user: CurrentUser, state: State) -> JSONResponse:
    """Cancel a pending job or interrupt a running one; false for finished or unknown ids."""
    parsed = service.parse_job_id(job_id)
    cancelled = parsed is not None and await cancel_job(state, user, parsed)
    return JSONResponse({"cancelled": cancelled})


@router.post(
    "/api/jobs/cancel",
    operation_id="cancel_many",
    response_model=CancelResponse,
    responses={**UNAUTHORIZED, 400: {"model": JobsCancelError}, 413: {"model": JobsCancelError}},
    openapi_extra=json_body_doc(CancelJobsRequest),
)
async def cancel_many(request: Request, user: CurrentUser, state: State) -> JSONResponse:
    """Cancel several jobs; `cancelled` is true if any was."""
    try:
        body = await read_json(request, state.settings.max_json_body)
    except InvalidBody:
        raise InvalidBody("Request body must be valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidBody("Request body must be a JSON object")
    job_ids = body.get("job_ids", [])
    if not isinstance(job_ids, list):
        raise InvalidBody("job_ids must be a list")
    if len(job_ids) > MAX_CANCEL_IDS:
        raise InvalidBody(f"job_ids must hold at most {MAX_CANCEL_IDS} ids")
    invalid = [job_id for job_id in job_ids if not is_canonical_uuid(job_id)]
    if invalid:
        return JSONResponse(
            {"error": "job_ids contains invalid id(s)", "invalid_ids": invalid}, status_code=400
        )
    results = [await cancel_job(state, user, parsed) for parsed in service.parse_ids(job_ids)]
    return JSONResponse({"cancelled": any(results)})


@get(
    cloud_router,
    "/api/job/{job_id}/status",
    operation_id="job_status",
    response_model=JobStatusResponse,
    responses=cloud_errors(404),
)
async def job_status(job_id: str, user: CurrentUser, state: State) -> JSONResponse:
    """Comfy Cloud's status poll: raw states and ISO-8601 times."""
    found = await service.get_job(state, user, job_id)
    if found is None:
        raise JobNotFound("Job not found")
    return JSONResponse(views.job_status(found.job, found.history))
