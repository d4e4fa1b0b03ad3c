"""`/users`, `/settings[/{id}]`, `/userdata[...]`, `/v2/userdata` (each also under `/api`), and Comfy Cloud's
`GET /api/user`: per-user state, stored in `user_data` and scoped to the caller."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import JSONResponse, Response

from comfy_cloud.errors import BadRequest, NotFound
from database.repositories.users import UserRepository
from services.ingest.auth.dependencies import CurrentUser
from services.ingest.body import read_body, read_json
from services.ingest.errors import Body, CloudRoute, ComfyError
from services.ingest.files.names import guess_type, is_dangerous
from services.ingest.routing import classic, comfy_router, get
from services.ingest.schemas import BINARY, EMPTY_OK, empty
from services.ingest.state import DbSession, State
from services.ingest.userdata.paths import raw_segments
from services.ingest.userdata.schemas import CloudUser, FileInfo, Listing, Settings, UsersConfig, V2Entry
from services.ingest.userdata.service import UserDataService, file_info

_routes = comfy_router(tags=["userdata"])


class UsernameError(ComfyError):
    status_code = 400
    body = Body.JSON


def _flag(value: str | None) -> bool:
    return (value or "").lower() == "true"


# -- users ---------------------------------------------------------------------------------------


@get(_routes, "/users", response_model=UsersConfig)
async def users(user: CurrentUser) -> UsersConfig:
    """Single-user style: every credential is one user, so the frontend never shows its user picker."""
    return UsersConfig()


@_routes.post("/users", response_model=str, responses={400: {"description": '{"error": "..."}'}})
async def create_user(request: Request, user: CurrentUser, state: State) -> str:
    """Users are created by authentication, not here: answers the caller's own id (the shape of
    ComfyUI's answer, a JSON string), after ComfyUI's validation of the body."""
    body = await read_json(request, state.settings.max_json_body, empty={})
    username = body.get("username") if isinstance(body, dict) else None
    if not isinstance(username, str) or not username.strip():
        raise UsernameError("username not provided")
    return str(user.id)


# -- settings ------------------------------------------------------------------------------------


@get(_routes, "/settings", response_model=Settings)
async def get_settings(user: CurrentUser, session: DbSession) -> JSONResponse:
    return JSONResponse(await UserDataService(session, user.id).settings())


@get(
    _routes,
    "/settings/{setting_id}",
    response_model=Any,
    responses={200: {"description": "the value (any JSON), or null when unset"}},
)
async def get_setting(setting_id: str, user: CurrentUser, session: DbSession) -> JSONResponse:
    """The value, or `null` when unset."""
    return JSONResponse((await UserDataService(session, user.id).settings()).get(setting_id))


@_routes.post(
    "/settings",
    response_class=Response,
    responses={**EMPTY_OK, 400: {"description": "the body is not a JSON object"}},
)
async def post_settings(request: Request, user: CurrentUser, session: DbSession, state: State) -> Response:
    """Merge a JSON object into the settings."""
    values = await read_json(request, state.settings.max_json_body)
    if not isinstance(values, dict):
        raise BadRequest("settings must be a JSON object")
    await UserDataService(session, user.id).update_settings(values)
    return Response(status_code=200)


@_routes.post(
    "/settings/{setting_id}",
    response_class=Response,
    responses={**EMPTY_OK, 400: {"description": "the body is not JSON"}},
)
async def post_setting(
    setting_id: str, request: Request, user: CurrentUser, session: DbSession, state: State
) -> Response:
    """Set one setting to any JSON value."""
    value = await read_json(request, state.settings.max_json_body)
    await UserDataService(session, user.id).update_settings({setting_id: value})
    return Response(status_code=200)


# -- userdata ------------------------------------------------------------------------------------


@get(_routes, "/userdata", response_model=Listing, responses={400: {}, 403: {}, 404: {}})
async def list_userdata(
    user: CurrentUser,
    session: DbSession,
    dir: str | None = None,
    recurse: str | None = None,
    full_info: str | None = None,
    split: str | None = None,
) -> JSONResponse:
    """Files below `dir` (text errors: `Directory not provided`, `Invalid directory`, `Directory not
    found`, which the frontend reads as an empty list)."""
    service = UserDataService(session, user.id)
    listing = await service.listing(
        dir, recurse=_flag(recurse), full_info=_flag(full_info), split=_flag(split)
    )
    return JSONResponse(listing)


@get(_routes, "/v2/userdata", response_model=list[V2Entry], responses={400: {}, 404: {}})
async def list_userdata_v2(user: CurrentUser, session: DbSession, path: str = "") -> JSONResponse:
    return JSONResponse(await UserDataService(session, user.id).listing_v2(path))


_FILE = {
    200: {
        "description": "the file's bytes, typed by its name, as a download (`user.css`: inline CSS)",
        "content": {"*/*": {"schema": BINARY}},
    },
    403: {},
    404: {},
}


@get(_routes, "/userdata/{file:path}", response_class=Response, responses=_FILE)
async def read_userdata(request: Request, user: CurrentUser, session: DbSession) -> Response:
    """A file's bytes, always as a download (`user.css` excepted: served inline as CSS)."""
    path, content = await UserDataService(session, user.id).read(_one_segment(request))
    if path == "user.css":
        content_type, disposition = "text/css", "inline"
    else:
        content_type = guess_type(path) or "application/octet-stream"
        if is_dangerous(content_type):
            content_type = "application/octet-stream"
        disposition = "attachment"
    headers = {"X-Content-Type-Options": "nosniff", "Content-Disposition": disposition}
    return Response(content, media_type=content_type, headers=headers)


_WRITE = {
    200: {"description": 'the path from the user root ("workflows/a.json"), or its info with full_info=true'},
    400: {},
    403: {},
    409: {"description": "File already exists"},
}


@_routes.post("/userdata/{file:path}/move/{dest:path}", response_model=str | FileInfo, responses=_WRITE)
async def move_userdata(
    request: Request,
    user: CurrentUser,
    session: DbSession,
    state: State,
    overwrite: str | None = None,
    full_info: str | None = None,
) -> JSONResponse:
    """Rename `file` to `dest` (`overwrite=false` refuses an existing destination)."""
    return await _post(request, user, session, state, overwrite, full_info)


@_routes.post("/userdata/{file:path}", response_model=str | FileInfo, responses=_WRITE)
async def write_userdata(
    request: Request,
    user: CurrentUser,
    session: DbSession,
    state: State,
    overwrite: str | None = None,
    full_info: str | None = None,
) -> JSONResponse:
    """Write the raw body to `file` (`overwrite=false` refuses an existing file)."""
    return await _post(request, user, session, state, overwrite, full_info)


@_routes.delete(
    "/userdata/{file:path}",
    status_code=204,
    responses={**empty("Deleted", 204), 403: {}, 404: {}},
)
async def delete_userdata(request: Request, user: CurrentUser, session: DbSession) -> Response:
    await UserDataService(session, user.id).delete(_one_segment(request))
    return Response(status_code=204)


async def _post(
    request: Request,
    user: CurrentUser,
    session: DbSession,
    state: State,
    overwrite: str | None,
    full_info: str | None,
) -> JSONResponse:
    service = UserDataService(session, user.id)
    keep = overwrite != "false"
    segments = raw_segments(request)
    if len(segments) == 3 and segments[1] == "move":
        info = await service.move(segments[0], segments[2], overwrite=keep)
    elif len(segments) == 1:
        content = await read_body(request, state.settings.max_json_body)
        info = await service.write(segments[0], content, overwrite=keep)
    else:
        raise NotFound()  # "a/b" with a literal slash matches no ComfyUI route
    return JSONResponse(file_info(info) if _flag(full_info) else info.path)


def _one_segment(request: Request) -> str:
    segments = raw_segments(request)
    if len(segments) != 1:
        raise NotFound()
    return segments[0]


# -- Comfy Cloud ---------------------------------------------------------------------------------

_cloud = APIRouter(route_class=CloudRoute, tags=["userdata"])


@_cloud.get("/api/user", response_model=CloudUser)
async def current_user(user: CurrentUser, session: DbSession) -> CloudUser:
    """The caller (Comfy Cloud's `GET /api/user`, with the account's id, name and email)."""
    row = await UserRepository(session).get(user.id)
    return CloudUser(id=str(user.id), name=user.name, email=row.email if row else None)


router = APIRouter()
router.include_router(classic(_routes))
router.include_router(_cloud)
