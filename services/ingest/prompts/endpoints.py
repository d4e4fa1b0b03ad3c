"""POST /prompt, GET /prompt (bare and /api)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from services.ingest.auth.dependencies import CurrentUser
from services.ingest.body import read_json
from services.ingest.errors import PromptRoute
from services.ingest.prompts import service
from services.ingest.prompts.schemas import PromptQueueInfo, PromptRequest, PromptResponse
from services.ingest.routing import classic, get
from services.ingest.schemas import UNAUTHORIZED, PromptErrorResponse, json_body_doc
from services.ingest.state import State

_routes = APIRouter(route_class=PromptRoute, tags=["prompt"])

_ERRORS = {
    **UNAUTHORIZED,
    400: {"model": PromptErrorResponse, "description": "Invalid prompt or body (ComfyUI's error shape)"},
    413: {"model": PromptErrorResponse, "description": "Body too large"},
    503: {"model": PromptErrorResponse, "description": "Credentials cannot be sealed"},
}


@_routes.post(
    "/prompt",
    response_model=PromptResponse,
    responses=_ERRORS,
    openapi_extra=json_body_doc(PromptRequest),
)
async def post_prompt(request: Request, user: CurrentUser, state: State) -> JSONResponse:
    """Queue a prompt (ComfyUI's body). Validated against the node catalogues of the live instances;
    partner credentials in extra_data are sealed; a repeated prompt_id is refused."""
    body = await read_json(request, state.settings.max_json_body, empty=None)
    usage_source = request.headers.get("comfy-usage-source")
    submitted = await service.submit(state, user, body, usage_source)
    return JSONResponse(
        {
            "prompt_id": str(submitted.prompt_id),
            "number": submitted.number,
            "node_errors": submitted.node_errors,
        }
    )


@get(_routes, "/prompt", response_model=PromptQueueInfo, responses=UNAUTHORIZED)
async def get_prompt(user: CurrentUser, state: State) -> JSONResponse:
    """The caller's running plus pending jobs."""
    remaining = await service.queue_remaining(state, user)
    return JSONResponse({"exec_info": {"queue_remaining": remaining}})


router = classic(_routes, document_bare=True)
