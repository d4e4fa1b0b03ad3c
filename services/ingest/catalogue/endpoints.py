"""The node catalogue and the server's self-description, in ComfyUI's shapes (each classic route also under
`/api`; `/internal/...` only bare).

Where a cloud has nothing to report (custom-node extensions, translations, templates, blueprints, node
replacements, logs, model paths) the answer is honestly empty, in the shape the local server uses, so the
frontend loads without errors.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import JSONResponse, Response

from comfy_cloud.errors import NotFound
from database.repositories.fleet_info import FleetInfoRepository
from database.repositories.user_files import UserFileRepository
from database.repositories.users import UserRepository
from services.ingest.auth.dependencies import CurrentUser, current_user
from services.ingest.catalogue import models, system
from services.ingest.catalogue.schemas import (
    Features,
    LogsRaw,
    ModelFolder,
    ModelListing,
    NodeDef,
    SystemStats,
)
from services.ingest.catalogue.service import PreparedCatalogue, PreparedCatalogueCache, render, user_inputs
from services.ingest.errors import Body, ComfyError, Unauthorized
from services.ingest.routing import classic, comfy_router, get
from services.ingest.schemas import EMPTY_OK
from services.ingest.state import DbSession, State

_routes = comfy_router(tags=["catalogue"])
_internal = comfy_router(tags=["internal"])

# The node definitions are answered as pre-serialised JSON (see catalogue.service): the model documents
# them and is never applied.
_NODE_DEFS = {200: {"model": dict[str, NodeDef], "description": "{class_type: NodeDef}"}}
_NODE_DEF = {
    200: {"model": dict[str, NodeDef], "description": "{class_type: NodeDef}, or {} for an unknown class"}
}


class InvalidDirectoryType(ComfyError):
    """Invalid directory type"""

    status_code = 400
    body = Body.JSON


async def _prepared(request: Request, state: State) -> PreparedCatalogue:
    cache = getattr(request.app.state, "prepared_catalogue", None)
    if cache is None:
        cache = request.app.state.prepared_catalogue = PreparedCatalogueCache()
    return await cache.get(await state.catalogues.get())


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


# -- nodes ---------------------------------------------------------------------------------------


@get(_routes, "/object_info", response_class=Response, responses=_NODE_DEFS)
async def object_info(request: Request, user: CurrentUser, session: DbSession, state: State) -> Response:
    """Every node class the live workers offer; file combos list the caller's own inputs."""
    prepared = await _prepared(request, state)
    return _json(render(prepared, await user_inputs(session, user.id)))


@get(_routes, "/object_info/{node_class}", response_class=Response, responses=_NODE_DEF)
async def object_info_node(
    node_class: str, request: Request, user: CurrentUser, session: DbSession, state: State
) -> Response:
    """`{class_type: NodeDef}`, or `{}` for an unknown class."""
    prepared = await _prepared(request, state)
    return _json(render(prepared, await user_inputs(session, user.id), only=node_class))


# -- server --------------------------------------------------------------------------------------


@get(_routes, "/features", response_model=Features)
async def features(request: Request, session: DbSession, state: State) -> dict[str, Any]:
    """Server feature flags. Credentials are optional (the frontend asks before it has any): with them,
    `max_concurrent_jobs` is the caller's own limit."""
    limit = getattr(state.settings, "default_max_concurrent_jobs", system.DEFAULT_MAX_CONCURRENT_JOBS)
    try:
        user = await current_user(request)
    except Unauthorized:
        user = None
    if user is not None:
        row = await UserRepository(session).get(user.id)
        if row is not None and row.max_concurrent_jobs is not None:
            limit = row.max_concurrent_jobs
    return system.server_features(max_upload_size=state.settings.max_upload_size, max_concurrent_jobs=limit)


@get(_routes, "/system_stats", response_model=SystemStats)
async def system_stats(session: DbSession) -> JSONResponse:
    # Not validated against the model: the body carries what the instances reported.
    return JSONResponse(system.system_stats(await FleetInfoRepository(session).live_system_stats()))


# -- models --------------------------------------------------------------------------------------


@get(_routes, "/embeddings", response_model=list[str])
async def embeddings() -> list[str]:
    return []


@get(_routes, "/models", response_model=list[str])
async def model_folders() -> list[str]:
    return list(models.FOLDERS)


@get(_routes, "/models/{folder}", response_model=list[str], responses={404: {}})
async def model_folder(folder: str, request: Request, state: State) -> list[str]:
    if folder not in models.FOLDERS:
        raise NotFound()
    return models.model_files((await _prepared(request, state)).object_info, folder)


@get(_routes, "/experiment/models", response_model=list[ModelFolder])
async def experiment_models() -> list[dict[str, Any]]:
    return models.experiment_folders()


@get(_routes, "/experiment/models/{folder}", response_model=list[ModelListing], responses={404: {}})
async def experiment_model_folder(folder: str, request: Request, state: State) -> list[dict[str, Any]]:
    if folder not in models.FOLDERS:
        raise NotFound()
    files = models.model_files((await _prepared(request, state)).object_info, folder)
    return [{"name": name, "pathIndex": 0} for name in files]


# -- frontend support ----------------------------------------------------------------------------


@get(_routes, "/extensions", response_model=list[str])
async def extensions() -> list[str]:
    """Custom-node web extensions: none (the frontend's own core extensions need no listing)."""
    return []


@get(_routes, "/i18n", response_model=dict[str, Any])
async def i18n() -> dict[str, Any]:
    return {}


@get(_routes, "/workflow_templates", response_model=dict[str, Any])
async def workflow_templates() -> dict[str, Any]:
    return {}


@get(_routes, "/global_subgraphs", response_model=dict[str, Any])
async def global_subgraphs() -> dict[str, Any]:
    return {}


_NO_BLUEPRINT = {
    200: {
        "description": "null: there are no blueprints (ComfyUI's answer for an unknown one)",
        "content": {"application/json": {"schema": {"type": "null"}}},
    }
}


@get(_routes, "/global_subgraphs/{subgraph_id}", response_model=None, responses=_NO_BLUEPRINT)
async def global_subgraph(subgraph_id: str) -> JSONResponse:
    return JSONResponse(None)  # ComfyUI answers null for an unknown blueprint


@get(_routes, "/node_replacements", response_model=dict[str, Any])
async def node_replacements() -> dict[str, Any]:
    return {}


# -- internal (frontend use only; never under /api) ----------------------------------------------


@get(_internal, "/internal/files/{directory_type}", response_model=list[str], responses={400: {}})
async def internal_files(directory_type: str, user: CurrentUser, session: DbSession) -> list[str]:
    """The caller's top-level files of one type, newest first, annotated (`"x.png [output]"`)."""
    if directory_type not in ("input", "output", "temp"):
        raise InvalidDirectoryType()
    rows = await UserFileRepository(session).listing(user.id, directory_type, top_level_only=True)
    return [f"{row.filename} [{directory_type}]" for row in rows if not row.filename.startswith(".")]


@get(_internal, "/internal/folder_paths", response_model=dict[str, list[str]])
async def folder_paths() -> dict[str, list[str]]:
    """No model directories of ours to reveal (the workers' are theirs)."""
    return {}


@get(_internal, "/internal/logs", response_model=str)
async def logs() -> str:
    return ""


@get(_internal, "/internal/logs/raw", response_model=LogsRaw)
async def logs_raw() -> dict[str, Any]:
    return {"entries": [], "size": {"cols": None, "rows": None}}


@_internal.patch("/internal/logs/subscribe", response_class=Response, responses=EMPTY_OK)
async def subscribe_logs() -> Response:
    """Accepted; there are no server logs to stream to a browser."""
    return Response(status_code=200)


router = classic(_routes)
router.include_router(_internal)
