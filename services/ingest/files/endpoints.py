"""`POST /upload/image`, `POST /upload/mask`, `GET /view` (each also under `/api`), as ComfyUI serves them,
over the caller's own files only.

`/view` answers with the bytes (local storage: streamed with ComfyUI's headers) or, when the storage can
sign URLs (Google Cloud Storage), a 302 to a short-lived signed URL as Comfy Cloud does; `preview` and
`channel` re-encode the image inline.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import Query, Request
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from database.models import File
from services.ingest.auth.dependencies import CurrentUser
from services.ingest.files import images
from services.ingest.files.dependencies import StorageDep
from services.ingest.files.forms import read_upload_form
from services.ingest.files.names import guess_type, is_dangerous
from services.ingest.files.schemas import UPLOAD_BODY, UploadResponse
from services.ingest.files.service import FileService
from services.ingest.routing import classic, comfy_router, get
from services.ingest.schemas import BINARY
from services.ingest.state import DbSession

# Long enough for a slow client to follow the redirect, short enough that a leaked URL soon dies.
SIGNED_URL_TTL = timedelta(minutes=10)

_ERRORS = {400: {"description": "malformed upload or over a limit"}, 401: {"description": "no credentials"}}
_VIEW_RESPONSES = {
    200: {
        "description": "the file's bytes, in its own content type (active content only as a download)",
        "content": {"*/*": {"schema": BINARY}},
    },
    302: {
        "description": "a short-lived signed URL of the file (Google Cloud Storage)",
        "content": {},
        "headers": {"Location": {"description": "the signed URL", "schema": {"type": "string"}}},
    },
    400: {"description": "empty or unsafe filename, unknown type"},
    403: {"description": "subfolder escapes the directory"},
    404: {"description": "no such file for this user"},
}

_routes = comfy_router(tags=["files"])


@_routes.post("/upload/image", response_model=UploadResponse, responses=_ERRORS, openapi_extra=UPLOAD_BODY)
async def upload_image(
    request: Request, user: CurrentUser, session: DbSession, storage: StorageDep
) -> UploadResponse:
    """Upload a file (any kind: the frontend also sends audio, video and 3D files this way)."""
    form = await read_upload_form(request)
    try:
        return await FileService(session, storage).upload_image(user.id, form)
    finally:
        await form.close()


@_routes.post("/upload/mask", response_model=UploadResponse, responses=_ERRORS, openapi_extra=UPLOAD_BODY)
async def upload_mask(
    request: Request, user: CurrentUser, session: DbSession, storage: StorageDep
) -> UploadResponse:
    """Save `original_ref` with the alpha channel of the uploaded mask (the mask editor's upload)."""
    form = await read_upload_form(request)
    try:
        return await FileService(session, storage).upload_mask(user.id, form)
    finally:
        await form.close()


@get(_routes, "/view", response_class=Response, responses=_VIEW_RESPONSES)
async def view(
    request: Request,
    user: CurrentUser,
    session: DbSession,
    storage: StorageDep,
    filename: str | None = None,
    type_: Annotated[str, Query(alias="type")] = "output",
    subfolder: str | None = None,
    preview: str | None = None,
    channel: str | None = None,
) -> Response:
    """A file of the caller: `filename` (` [input]`/` [output]`/` [temp]` selects the type), `type`
    (default output), `subfolder`; `preview=webp|jpeg[;quality]`, `channel=rgb|a` re-encode it."""
    if filename is None:
        return Response(status_code=404)  # as ComfyUI
    service = FileService(session, storage)
    file = await service.locate(user.id, filename, type_, subfolder)
    channel = "a" if channel == "alpha" else channel  # Comfy Cloud's spelling
    if preview is not None or channel in ("rgb", "a"):
        return await _processed(service, file, preview, channel or "")
    return await _deliver(request, storage, file)


async def _processed(service: FileService, file: File, preview: str | None, channel: str) -> Response:
    data = await service.read(file)
    if preview is not None:
        encoded = await asyncio.to_thread(images.preview, data, preview, channel)
    elif channel == "rgb":
        encoded = await asyncio.to_thread(images.rgb, data)
    else:
        encoded = await asyncio.to_thread(images.alpha, data)
    headers = {"Content-Disposition": _disposition(file.filename)}
    return Response(encoded.data, media_type=encoded.content_type, headers=headers)


async def _deliver(request: Request, storage: StorageDep, file: File) -> Response:
    content_type = guess_type(file.filename) or file.content_type or "application/octet-stream"
    headers = {"Content-Disposition": _disposition(file.filename), "X-Content-Type-Options": "nosniff"}
    attachment = False
    if content_type == "image/svg+xml":
        headers["Vary"] = "Sec-Fetch-Dest"
    if is_dangerous(content_type) and not (
        content_type == "image/svg+xml" and request.headers.get("sec-fetch-dest") == "image"
    ):
        # Active content would run in our origin: always a download.
        content_type, attachment = "application/octet-stream", True
        headers.update(
            {
                "Content-Disposition": _disposition(file.filename, "attachment"),
                "Vary": "Sec-Fetch-Dest",
                "Cache-Control": "no-store",
            }
        )
    url = await storage.signed_url(
        file.storage_key,
        expires=SIGNED_URL_TTL,
        filename=file.filename,
        content_type=content_type,
        disposition="attachment" if attachment else "inline",
    )
    if url is not None:
        return RedirectResponse(url, status_code=302, headers={"Cache-Control": "no-store"})
    path = storage.local_path(file.storage_key)
    if path is not None and await asyncio.to_thread(path.is_file):
        return FileResponse(path, media_type=content_type, headers=headers)
    stream = await storage.open_stream(file.storage_key)  # ObjectNotFound: an empty 404
    headers["Content-Length"] = str(file.size)
    return StreamingResponse(stream, media_type=content_type, headers=headers)


def _disposition(filename: str, kind: str | None = None) -> str:
    """ComfyUI's `filename="<name>"` (no disposition type unless forced); names a header cannot carry
    verbatim get an ASCII fallback plus the RFC 6266 UTF-8 form."""
    prefix = f"{kind}; " if kind else ""
    if filename.isascii() and filename.isprintable() and '"' not in filename and "\\" not in filename:
        return f'{prefix}filename="{filename}"'
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in filename)
    return f"{prefix}filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


router = classic(_routes)
