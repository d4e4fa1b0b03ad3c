"""GET /view on local storage: ComfyUI's recorded variants, headers, re-encoding, traversal, isolation."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.ingest.compat_support import Caller, png

HEADERS = ("X-Content-Type-Options", "Content-Disposition", "Content-Type")


@pytest.fixture
async def probe(alice: Caller) -> bytes:
    """The recording's setup: probe.png in input/, input/sub/dir/ and output/."""
    data = png(5, 4, (10, 200, 30, 128), mode="RGBA")
    for fields in ({}, {"subfolder": "sub/dir"}, {"type": "output"}):
        assert (await alice.upload(data, "probe.png", **fields)).status_code == 200
    return data


def recorded(fixtures_dir: Path) -> list[dict]:
    return json.loads((fixtures_dir / "http" / "view-0.33.0.json").read_text())["exchanges"]


async def test_recorded_view_variants(alice: Caller, probe: bytes, fixtures_dir: Path) -> None:
    """Every recorded request: the same status, the same headers, an empty body for errors."""
    for exchange in recorded(fixtures_dir):
        path, expected = exchange["request"]["path"], exchange["response"]
        response = await alice.client.get(path)
        assert response.status_code == expected["status"], path
        for name in HEADERS:
            assert response.headers.get(name) == expected["headers"].get(name), (path, name)
        if expected["status"] != 200:
            assert response.content == b"", path
        elif "preview" not in path and "channel" not in path:
            assert response.content == probe, path


async def test_preview_and_channels_reencode(alice: Caller, probe: bytes) -> None:
    async def view(**params: str) -> Image.Image:
        response = await alice.client.get(
            "/api/view", params={"filename": "probe.png", "type": "input", **params}
        )
        assert response.status_code == 200
        return Image.open(io.BytesIO(response.content))

    webp = await view(preview="webp;50")
    assert webp.format == "WEBP" and webp.size == (5, 4)
    jpeg = await view(preview="jpeg;80")
    assert jpeg.format == "JPEG" and jpeg.mode == "RGB"
    assert (await view(preview="png")).format == "WEBP"  # anything else is WebP
    rgb = await view(channel="rgb")
    assert rgb.format == "PNG" and rgb.mode == "RGB" and rgb.getpixel((0, 0)) == (10, 200, 30)
    alpha = await view(channel="a")
    assert alpha.mode == "RGBA" and alpha.getpixel((0, 0)) == (0, 0, 0, 128)
    assert (await view(channel="alpha")).getpixel((0, 0)) == (0, 0, 0, 128)  # Comfy Cloud's spelling


async def test_alpha_of_an_opaque_image_is_opaque(alice: Caller) -> None:
    await alice.upload(png(2, 2, (1, 2, 3)), "rgb.png")
    response = await alice.client.get(
        "/api/view", params={"filename": "rgb.png", "type": "input", "channel": "a"}
    )
    assert Image.open(io.BytesIO(response.content)).getpixel((1, 1)) == (0, 0, 0, 255)


async def test_preview_of_a_non_image_is_400(alice: Caller) -> None:
    await alice.client.post("/api/upload/image", files={"image": ("notes.txt", b"hello", "text/plain")})
    for params in ({"preview": "webp"}, {"channel": "rgb"}):
        response = await alice.client.get(
            "/api/view", params={"filename": "notes.txt", "type": "input", **params}
        )
        assert response.status_code == 400 and response.content == b""


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({}, 404),
        ({"filename": "nope.png"}, 404),
        ({"filename": ""}, 400),
        ({"filename": "../x.png"}, 400),
        ({"filename": "a..b.png"}, 400),  # ComfyUI refuses any ".." in the name
        ({"filename": "/etc/passwd"}, 400),
        ({"filename": "probe.png", "type": "bogus"}, 400),
        ({"filename": "probe.png", "subfolder": "../.."}, 403),
        ({"filename": "probe.png", "subfolder": "/etc"}, 403),
        ({"filename": "probe.png", "subfolder": "sub/../../x"}, 403),
        ({"filename": "probe.png\x00.png"}, 400),
    ],
)
async def test_errors_have_empty_bodies(
    alice: Caller, probe: bytes, params: dict[str, str], status: int
) -> None:
    response = await alice.client.get("/api/view", params=params)
    assert response.status_code == status
    assert response.content == b""


async def test_name_with_a_folder_reads_the_base_name(alice: Caller, probe: bytes) -> None:
    # ComfyUI keeps only the base name of `filename`: "sub/dir/probe.png" is output/probe.png.
    response = await alice.client.get("/api/view", params={"filename": "sub/dir/probe.png"})
    assert response.status_code == 200 and response.content == probe


async def test_another_users_file_is_exactly_unknown(alice: Caller, bob: Caller, probe: bytes) -> None:
    for params in (
        {"filename": "probe.png", "type": "input"},
        {"filename": "probe.png [output]"},
        {"filename": "probe.png", "type": "input", "subfolder": "sub/dir", "preview": "webp;50"},
        {"filename": "probe.png", "type": "input", "channel": "a"},
    ):
        foreign = await bob.client.get("/api/view", params=params)
        unknown = await bob.client.get("/api/view", params={**params, "filename": "never-uploaded.png"})
        assert foreign.status_code == unknown.status_code == 404
        assert foreign.content == unknown.content == b""
        assert dict(foreign.headers) == dict(unknown.headers)


async def test_dangerous_types_are_downloads(alice: Caller) -> None:
    for name, data in (("page.html", b"<script>alert(1)</script>"), ("style.css", b"body{}"), ("x.js", b"1")):
        await alice.client.post("/api/upload/image", files={"image": (name, data, "text/plain")})
        response = await alice.client.get("/api/view", params={"filename": name, "type": "input"})
        assert response.status_code == 200 and response.content == data
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["content-disposition"] == f'attachment; filename="{name}"'
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["vary"] == "Sec-Fetch-Dest"
        assert response.headers["x-content-type-options"] == "nosniff"


async def test_svg_renders_only_as_an_image(alice: Caller) -> None:
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"/>'
    await alice.client.post("/api/upload/image", files={"image": ("v.svg", svg, "image/svg+xml")})
    params = {"filename": "v.svg", "type": "input"}
    as_image = await alice.client.get("/api/view", params=params, headers={"Sec-Fetch-Dest": "image"})
    assert as_image.headers["content-type"] == "image/svg+xml"
    assert as_image.headers["content-disposition"] == 'filename="v.svg"'
    as_document = await alice.client.get("/api/view", params=params, headers={"Sec-Fetch-Dest": "document"})
    assert as_document.headers["content-type"] == "application/octet-stream"
    assert as_document.headers["content-disposition"].startswith("attachment;")


async def test_unicode_names_get_an_rfc6266_disposition(alice: Caller) -> None:
    await alice.upload(png(), "Bild ö.png")
    response = await alice.client.get("/api/view", params={"filename": "Bild ö.png", "type": "input"})
    assert response.status_code == 200
    assert (
        response.headers["content-disposition"]
        == "filename=\"Bild _.png\"; filename*=UTF-8''Bild%20%C3%B6.png"
    )


async def test_head_and_range(alice: Caller, probe: bytes) -> None:
    params = {"filename": "probe.png", "type": "input"}
    head = await alice.client.head("/view", params=params)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(probe))
    part = await alice.client.get("/view", params=params, headers={"Range": "bytes=0-7"})
    assert part.status_code == 206 and part.content == probe[:8]


async def test_requires_credentials(anonymous: httpx.AsyncClient) -> None:
    assert (await anonymous.get("/api/view", params={"filename": "x.png"})).status_code == 401
