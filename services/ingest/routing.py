"""Registering ingest's routes the way ComfyUI serves them (protocol reference §1.1, §1.4, §9.1).

- `classic(router)`: `router`'s routes both under `/api` and bare, as ComfyUI's `add_routes()` serves its
  classic routes. The `/api` routes are documented and the bare aliases are left out of the OpenAPI
  document, except with `document_bare=True`: the prompt, queue and history routes have always been
  documented both ways, as operations `<endpoint>` (bare) and `<endpoint>_api`, and keep those ids.
- `get(router, path)`: `@router.get(path)` plus an undocumented HEAD twin (aiohttp answers HEAD for every
  GET). Routes that exist only under their own path (the jobs API, Cloud-only routes) register with it
  or the router's own decorators directly.
- `ComfyBodyRoute` (routers from `comfy_router()`): renders typed errors in ComfyUI's non-uniform body
  styles right at the route (`ComfyError.body` names the style: a bare status, text/plain, or
  `{"error": ...}`), so no app-wide handler has to know these shapes; a malformed parameter is a bare
  400, as ComfyUI has no 422. 401 is left to the app (authentication answers it the same way
  everywhere). The other route families (`errors.ComfyRoute`, `PromptRoute`, `CloudRoute`) leave their
  errors to the app's handlers, which render them in the family's style.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import APIRouter
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from comfy_cloud.errors import AppError
from services.ingest.errors import Body

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

# Arguments that only describe a route in the OpenAPI document: its hidden HEAD twin leaves them out.
_DOCUMENTATION = frozenset(
    {
        "response_model",
        "responses",
        "summary",
        "description",
        "response_description",
        "openapi_extra",
        "operation_id",
        "include_in_schema",
    }
)


def get(router: APIRouter, path: str, **kwargs: Any) -> Callable[[Endpoint], Endpoint]:
    """`@router.get(path, **kwargs)` plus an undocumented HEAD twin (same handler, no response model)."""

    def register(endpoint: Endpoint) -> Endpoint:
        router.add_api_route(path, endpoint, methods=["GET"], **kwargs)
        head = {k: v for k, v in kwargs.items() if k not in _DOCUMENTATION}
        router.add_api_route(
            path, endpoint, methods=["HEAD"], include_in_schema=False, response_model=None, **head
        )
        return endpoint

    return register


def classic(router: APIRouter, *, document_bare: bool = False) -> APIRouter:
    """`router`'s routes under `/api` (documented) and bare (ComfyUI's aliases: hidden from the OpenAPI
    document unless `document_bare`, whose operation ids are then `<endpoint>` and `<endpoint>_api`)."""
    both = APIRouter()
    if document_bare:
        both.include_router(router, generate_unique_id_function=_endpoint_name)
        both.include_router(router, prefix="/api", generate_unique_id_function=_endpoint_name_api)
    else:
        both.include_router(router, prefix="/api")
        both.include_router(router, include_in_schema=False)
    return both


def _endpoint_name(route: APIRoute) -> str:
    return route.name


def _endpoint_name_api(route: APIRoute) -> str:
    return f"{route.name}_api"


# -- ComfyUI's error bodies, rendered at the route -----------------------------------------------


def render_error(exc: AppError) -> Response:
    style = getattr(exc, "body", Body.EMPTY)
    if style is Body.TEXT:
        return PlainTextResponse(exc.message, status_code=exc.status_code)
    if style is Body.JSON:
        return JSONResponse({"error": exc.message}, status_code=exc.status_code)
    return Response(status_code=exc.status_code)


class ComfyBodyRoute(APIRoute):
    """Renders AppError (and malformed parameters, as 400) in ComfyUI's style for this route."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except AppError as exc:
                if exc.status_code == 401:
                    raise  # authentication's own style, rendered by the app
                return render_error(exc)
            except RequestValidationError:
                # ComfyUI has no 422; a malformed parameter is a bad request, with ComfyUI's bare body.
                return Response(status_code=400)

        return route


def comfy_router(**kwargs: Any) -> APIRouter:
    """An APIRouter whose routes are `ComfyBodyRoute`s."""
    return APIRouter(route_class=ComfyBodyRoute, **kwargs)
