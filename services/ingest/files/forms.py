"""The multipart form of `/upload/image` and `/upload/mask`, read under the upload size limit.

The form is parsed here rather than by FastAPI's `File()` parameters so that the size limit holds while
the body streams in (a 2 GB body is refused after 50 MB, not after it reached the disk) and so that every
malformed form is ComfyUI's bare 400. The file part is spooled by Starlette (memory, then a temporary file).
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import Message

from comfy_cloud.errors import BadRequest
from services.ingest.files.limits import FORM_OVERHEAD, MAX_UPLOAD_BYTES, UploadRejected, too_large_message
from services.ingest.files.names import FILE_TYPES

# The frontend sends image, type, subfolder, overwrite and (masks) original_ref; a few spare.
_MAX_FIELDS = 16
_MAX_FILES = 4
_MAX_FIELD_BYTES = 64 * 1024


@dataclass(slots=True)
class UploadForm:
    form: FormData  # owns the spooled file: close it when done
    file: UploadFile
    filename: str
    type: str
    subfolder: str  # as sent: ComfyUI echoes it unchanged
    overwrite: bool
    original_ref: str | None

    async def close(self) -> None:
        await self.form.close()


async def read_upload_form(request: Request, limit: int = MAX_UPLOAD_BYTES) -> UploadForm:
    form = await _parse(request, limit + FORM_OVERHEAD, limit)
    try:
        return _fields(form, limit)
    except BaseException:
        await form.close()
        raise


async def _parse(request: Request, body_limit: int, limit: int) -> FormData:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > body_limit:
        raise UploadRejected(too_large_message(limit))
    received = 0

    async def limited_receive() -> Message:
        nonlocal received
        message = await request.receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > body_limit:
                raise UploadRejected(too_large_message(limit))
        return message

    counted = Request(request.scope, limited_receive)
    try:
        return await counted.form(
            max_files=_MAX_FILES, max_fields=_MAX_FIELDS, max_part_size=_MAX_FIELD_BYTES
        )
    except HTTPException as exc:  # Starlette's MultiPartException, as a 400 with a JSON detail
        raise BadRequest(f"malformed multipart body: {exc.detail}") from None


def _fields(form: FormData, limit: int) -> UploadForm:
    image = form.get("image")
    if not isinstance(image, UploadFile) or not image.filename:
        raise BadRequest("the 'image' field must be a file with a name")
    if image.size is not None and image.size > limit:
        raise UploadRejected(too_large_message(limit))
    kind = _text(form, "type")
    if kind is None:
        kind = "input"
    elif kind not in FILE_TYPES:
        raise BadRequest("type must be input, temp or output")  # ComfyUI: 500
    overwrite = _text(form, "overwrite")
    return UploadForm(
        form=form,
        file=image,
        filename=image.filename,
        type=kind,
        subfolder=_text(form, "subfolder") or "",
        overwrite=overwrite in ("true", "1"),
        original_ref=_text(form, "original_ref"),
    )


def _text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is None or isinstance(value, str):
        return value
    raise BadRequest(f"the '{name}' field must be text")
