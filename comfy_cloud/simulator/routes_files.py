"""`/upload/image`, `/upload/mask` and `/view` with ComfyUI's statuses and headers (§2.3, §3.5, §3.6).

Error statuses carry empty bodies. `/view` streams files with `X-Content-Type-Options: nosniff` on
0.33.0; re-encoded answers (`preview`, `channel`) carry only Content-Type and Content-Disposition.
"""

from __future__ import annotations

import io
import json
import mimetypes
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from comfy_cloud.simulator.files import split_annotation, upload_target
from comfy_cloud.simulator.responses import empty, json_response, sim_state, text
from comfy_cloud.simulator.state import SimState

# Types ComfyUI 0.33 refuses to render inline (HTML, scripts, styles, XML).
DANGEROUS_TYPES = {"text/html", "text/html-sandboxed", "application/xhtml+xml", "text/javascript", "text/css"}


class UploadTypeError(Exception):
    """An upload `type` other than input/temp/output: ComfyUI fails with a 500."""


@dataclass(frozen=True)
class Upload:
    """A form part that came with a filename (possibly empty)."""

    filename: str
    data: bytes


async def _read_form(request: web.Request) -> Mapping[str, Any] | web.Response:
    """The form fields, or a 400 for a malformed multipart body (never a 500).

    Multipart is read part by part rather than with `request.post()`, which turns a part whose filename is
    empty into a plain field: that one must stay an upload, for ComfyUI's 500 on an empty filename.
    """
    if request.content_type == "application/x-www-form-urlencoded":
        return await request.post()
    if request.content_type != "multipart/form-data":
        return {}  # no form at all: no image, hence a 400
    try:
        reader = await request.multipart()
    except ValueError:  # the only thing it checks is the boundary parameter
        return text("Missing boundary in multipart.", 400)
    form: dict[str, Any] = {}
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue  # nested multipart or a nameless part: no field
            data = await part.read()
            filename = part.filename
            value = Upload(filename, data) if filename is not None else data.decode("utf-8", "replace")
            form.setdefault(part.name, value)  # the first of repeated fields, as aiohttp's MultiDict.get
    except (ValueError, AssertionError, RuntimeError, EOFError):  # what a malformed body makes aiohttp raise
        return text("Invalid multipart data.", 400)
    return form


def _upload_dir(state: SimState, kind: Any) -> tuple[Path, str]:
    kind = kind or "input"
    folder = state.dirs.by_type(kind) if isinstance(kind, str) else None
    if folder is None:
        raise UploadTypeError(f"unknown upload type {kind!r}")
    return folder, kind


async def _store_upload(request: web.Request, mask: bool) -> web.Response:
    state = sim_state(request)
    form = await _read_form(request)
    if isinstance(form, web.Response):
        return form
    image = form.get("image")
    base, kind = _upload_dir(state, form.get("type"))
    if not isinstance(image, Upload):
        return empty(400)
    if not image.filename:
        raise UploadTypeError("upload without a filename")
    subfolder = str(form.get("subfolder", ""))
    folder = _upload_folder(base, subfolder, image.filename)
    if folder is None:
        return empty(400)
    data = image.data
    overwrite = form.get("overwrite") in ("true", "1")
    name = _write_upload(
        state, folder, image.filename, data, overwrite, str(form.get("original_ref")) if mask else None
    )
    return json_response({"name": name, "subfolder": subfolder, "type": kind})


def _upload_folder(base: Path, subfolder: str, filename: str) -> Path | None:
    """The (created) target folder, or None when subfolder/filename escape the base directory."""
    folder = Path(os.path.join(base, os.path.normpath(subfolder)))
    if os.path.commonpath((str(base), os.path.abspath(folder / filename))) != str(base):
        return None
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _write_upload(
    state: SimState, folder: Path, filename: str, data: bytes, overwrite: bool, original_ref: Any
) -> str:
    name, write = upload_target(folder, filename, data, overwrite)
    if write and original_ref is not None:
        _apply_mask(state, str(original_ref), data, folder / name)
    elif write:
        (folder / name).write_bytes(data)
    return name


def _apply_mask(state: SimState, original_ref: str, mask_bytes: bytes, target: Path) -> None:
    """Copy the mask's alpha into the referenced image; silently nothing if that image is absent."""
    ref = json.loads(original_ref)  # invalid JSON is a 500, as in ComfyUI
    filename, kind = split_annotation(ref["filename"], ref.get("type", "output"))
    if not filename or filename[0] == "/" or ".." in filename:
        return
    base = state.dirs.by_type(kind)
    if base is None:
        return
    folder = base
    if ref.get("subfolder", ""):
        folder = Path(os.path.join(base, ref["subfolder"]))
        if os.path.commonpath((os.path.abspath(folder), str(base))) != str(base):
            return
    source = folder / filename
    if not source.is_file():
        return
    with Image.open(source) as original:
        info = PngInfo()
        for key, value in getattr(original, "text", {}).items():
            info.add_text(key, value)
        rgba = original.convert("RGBA")
    rgba.putalpha(Image.open(io.BytesIO(mask_bytes)).convert("RGBA").getchannel("A"))
    rgba.save(target, format="PNG", compress_level=4, pnginfo=info)


async def upload_image(request: web.Request) -> web.Response:
    return await _store_upload(request, mask=False)


async def upload_mask(request: web.Request) -> web.Response:
    return await _store_upload(request, mask=True)


def _view_path(state: SimState, query: Any) -> Path | int:
    """The file `/view` refers to, or the error status."""
    if "filename" not in query:
        return 404
    filename, kind = split_annotation(query["filename"], "")
    if not filename or filename[0] == "/" or ".." in filename:
        return 400
    base = state.dirs.by_type(kind or query.get("type", "output"))
    if base is None:
        return 400
    folder = base
    if "subfolder" in query:
        folder = Path(os.path.join(base, query["subfolder"]))
        if os.path.commonpath((os.path.abspath(folder), str(base))) != str(base):
            return 403
    path = folder / os.path.basename(filename)
    return path if path.is_file() else 404


def _disposition(path: Path) -> dict[str, str]:
    return {"content-disposition": f'filename="{path.name}"'}


def _preview(path: Path, query: Any) -> web.Response:
    parts = query["preview"].split(";")
    fmt = parts[0]
    channel = query.get("channel", "")
    if fmt not in ("webp", "jpeg") or "a" in channel:
        fmt = "webp"
    quality = int(parts[-1]) if parts[-1].isdigit() else 90
    buf = io.BytesIO()
    with Image.open(path) as img:
        out = img.convert("RGB") if fmt == "jpeg" or channel == "rgb" else img
        out.save(buf, format=fmt, quality=quality)
    return web.Response(body=buf.getvalue(), headers={"content-type": f"image/{fmt}", **_disposition(path)})


def _channel(path: Path, channel: str) -> web.Response:
    buf = io.BytesIO()
    with Image.open(path) as img:
        if channel == "rgb":
            out = Image.merge("RGB", img.split()[:3]) if img.mode == "RGBA" else img.convert("RGB")
        else:
            alpha = img.split()[3] if img.mode == "RGBA" else Image.new("L", img.size, 255)
            out = Image.new("RGBA", img.size)
            out.putalpha(alpha)
        out.save(buf, format="PNG")
    return web.Response(body=buf.getvalue(), headers={"content-type": "image/png", **_disposition(path)})


def _file(state: SimState, path: Path, request: web.Request) -> web.StreamResponse:
    # A FileResponse, as ComfyUI's: streamed from disk (memory stays flat for a 1 GB output), with
    # aiohttp's Last-Modified/ETag and Range handling.
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    headers = _disposition(path)
    if state.config.is_legacy:
        if content_type in DANGEROUS_TYPES:
            content_type = "application/octet-stream"
        return web.FileResponse(path, headers={**headers, "content-type": content_type})
    risky = content_type in DANGEROUS_TYPES or content_type.endswith(("/xml", "+xml"))
    svg_as_image = content_type == "image/svg+xml" and request.headers.get("sec-fetch-dest") == "image"
    if risky and not svg_as_image:
        headers = {
            "content-disposition": f'attachment; filename="{path.name}"',
            "vary": "Sec-Fetch-Dest",
            "cache-control": "no-store",
        }
        content_type = "application/octet-stream"
    headers.update({"content-type": content_type, "x-content-type-options": "nosniff"})
    return web.FileResponse(path, headers=headers)


async def view(request: web.Request) -> web.StreamResponse:
    state = sim_state(request)
    query = request.query
    found = _view_path(state, query)
    if isinstance(found, int):
        return empty(found)
    if "preview" in query:
        return _preview(found, query)
    channel = query.get("channel", "rgba")
    if channel in ("rgb", "a"):
        return _channel(found, channel)
    return _file(state, found, request)
