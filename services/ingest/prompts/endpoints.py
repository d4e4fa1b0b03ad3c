"""POST /prompt, GET /prompt (bare and /api).

POST /prompt is ingest's busiest route by far, so it is served by `direct_routes`, plain Starlette routes
placed ahead of every FastAPI route (see app.py): FastAPI's route matching and request handling cost
~200 us of CPU per prompt here, about a third of what ingest spends on one. The FastAPI declaration of
the same endpoint remains, for the OpenAPI document only. The endpoint takes the request alone and
authenticates itself, exactly as the `CurrentUser` dependency does; errors still go to the app's
handlers, in the prompt route's style.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.routing import Match, Route
from starlette.types import Scope

from services.ingest.auth.dependencies import CurrentUser, current_user
from services.ingest.body import read_json
from services.ingest.errors import ErrorStyle, PromptRoute
from services.ingest.prompts import service
from services.ingest.prompts.schemas import PromptQueueInfo, PromptRequest, PromptResponse
from services.ingest.routing import classic, get
from services.ingest.schemas import UNAUTHORIZED, PromptErrorResponse, json_body_doc
from services.ingest.state import State, get_state

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
async def post_prompt(request: Request) -> JSONResponse:
    """Queue a prompt (ComfyUI's body). Validated against the node catalogues of the live instances;
    partner credentials in extra_data are sealed; a repeated prompt_id is refused."""
    user = await current_user(request)
    state = get_state(request)
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


class _DirectPromptRoute(Route):
    """A Starlette route that renders errors in the prompt style, as `PromptRoute` does (the error
    handlers read the style from scope["route"])."""

    error_style = ErrorStyle.PROMPT

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child_scope = super().matches(scope)
        if match is not Match.NONE:
            child_scope["route"] = self
        return match, child_scope


direct_routes = [
    _DirectPromptRoute(path, post_prompt, methods=["POST"]) for path in ("/prompt", "/api/prompt")
]
