"""POST /upload/image and /upload/mask: ComfyUI's recorded answers, naming rules per user, limits."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import zlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from services.ingest.files.limits import MAX_UPLOAD_BYTES
from tests.ingest.compat_support import Caller, png

UPLOAD = "/api/upload/image"


def recorded(fixtures_dir: Path) -> list[dict]:
    return json.loads((fixtures_dir / "http" / "upload-0.33.0.json").read_text())["exchanges"]


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims a size; no pixel data (an image's size is all a bomb needs)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


async def test_recorded_upload_sequence(alice: Caller, fixtures_dir: Path) -> None:
    """The 0.33.0 recording, request by request: statuses, bodies, content types."""
    probe, other = png(), png(color=(1, 2, 3))
    sent = [
        alice.upload(probe),
        alice.upload(probe, overwrite="true"),
        alice.upload(probe),
        alice.upload(probe, subfolder="sub/dir"),
        alice.upload(probe, type="temp"),
        alice.upload(probe, type="output"),
        alice.upload(other),
        alice.upload(probe, subfolder="../../escape"),
        alice.client.post(UPLOAD, data={"subfolder": "x"}),
    ]
    for request, exchange in zip(sent, recorded(fixtures_dir)[:9], strict=True):
        response = await request
        expected = exchange["response"]
        assert response.status_code == expected["status"], exchange["label"]
        if expected.get("body") is not None:
            assert response.json() == expected["body"], exchange["label"]
            assert response.headers["content-type"].startswith("application/json")
        else:
            assert response.content == b"", exchange["label"]


async def test_recorded_mask_upload(alice: Caller, fixtures_dir: Path) -> None:
    original = png(4, 3, (10, 200, 30))
    assert (await alice.upload(original, "photo.png")).status_code == 200
    mask = png(4, 3, (0, 0, 0, 77), mode="RGBA")
    ref = json.dumps({"filename": "photo.png", "subfolder": "", "type": "input"})
    response = await alice.upload(
        mask, "maskprobe.png", route="/api/upload/mask", subfolder="clipspace", type="input", original_ref=ref
    )
    assert response.status_code == 200
    assert response.json() == recorded(fixtures_dir)[9]["response"]["body"]
    view = await alice.client.get(
        "/api/view", params={"filename": "maskprobe.png", "subfolder": "clipspace", "type": "input"}
    )
    image = Image.open(io.BytesIO(view.content))
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0)) == (10, 200, 30, 77)  # the original's colour, the mask's alpha


async def test_mask_original_ref_forms(alice: Caller) -> None:
    await alice.upload(png(2, 2, (5, 5, 5)), "o.png", type="output", subfolder="sub")
    mask = png(2, 2, (0, 0, 0, 9), mode="RGBA")
    for ref in (
        {"filename": "o.png", "subfolder": "sub"},  # type defaults to output
        {"filename": "o.png [output]", "subfolder": "sub", "type": "input"},  # the annotation wins
        {"filename": "sub/o.png"},  # a name with a folder is read from that folder
    ):
        response = await alice.upload(mask, "m.png", route="/api/upload/mask", original_ref=json.dumps(ref))
        assert response.status_code == 200, ref


async def test_mask_errors_are_400(alice: Caller, bob: Caller) -> None:
    await alice.upload(png(2, 2), "mine.png")
    mask = png(2, 2, (0, 0, 0, 9), mode="RGBA")

    async def mask_upload(caller: Caller, ref: str, data: bytes = mask) -> httpx.Response:
        return await caller.upload(data, "m.png", route="/api/upload/mask", original_ref=ref)

    unknown = await mask_upload(alice, json.dumps({"filename": "nope.png", "type": "input"}))
    foreign = await mask_upload(bob, json.dumps({"filename": "mine.png", "type": "input"}))
    assert unknown.status_code == foreign.status_code == 400
    assert unknown.content == foreign.content  # another user's file is exactly an unknown one
    for ref in ("not json", "[1]", json.dumps({"filename": 3}), json.dumps({"filename": "../x.png"})):
        assert (await mask_upload(alice, ref)).status_code == 400, ref
    wrong_size = png(3, 3, (0, 0, 0, 9), mode="RGBA")
    assert (
        await mask_upload(alice, json.dumps({"filename": "mine.png", "type": "input"}), wrong_size)
    ).status_code == 400
    missing_ref = await alice.upload(mask, "m.png", route="/api/upload/mask")
    assert missing_ref.status_code == 400


async def test_naming_rules(alice: Caller) -> None:
    a, b, c = png(color=(1, 1, 1)), png(color=(2, 2, 2)), png(color=(3, 3, 3))
    assert (await alice.upload(a)).json()["name"] == "probe.png"
    assert (await alice.upload(b)).json()["name"] == "probe (1).png"
    assert (await alice.upload(c)).json()["name"] == "probe (2).png"
    # Same bytes as an existing candidate: that name again, nothing new.
    assert (await alice.upload(b)).json()["name"] == "probe (1).png"
    assert (await alice.upload(a)).json()["name"] == "probe.png"
    # Overwrite repoints the name; the old bytes are no longer served under it.
    assert (await alice.upload(c, overwrite="1")).json()["name"] == "probe.png"
    view = await alice.client.get("/api/view", params={"filename": "probe.png", "type": "input"})
    assert view.content == c
    # Names are per folder and per type.
    assert (await alice.upload(b, subfolder="pasted")).json()["name"] == "probe.png"
    assert (await alice.upload(b, type="temp")).json()["name"] == "probe.png"
    # The subfolder is echoed as sent; stored normalised, so /view finds it either way.
    echoed = await alice.upload(a, subfolder="pasted/./x/..")
    assert echoed.json() == {"name": "probe (1).png", "subfolder": "pasted/./x/..", "type": "input"}
    view = await alice.client.get(
        "/api/view", params={"filename": "probe (1).png", "subfolder": "pasted", "type": "input"}
    )
    assert view.content == a


async def test_names_are_per_user(alice: Caller, bob: Caller) -> None:
    assert (await alice.upload(png(color=(1, 1, 1)))).json()["name"] == "probe.png"
    assert (await bob.upload(png(color=(2, 2, 2)))).json()["name"] == "probe.png"
    mine = await alice.client.get("/view", params={"filename": "probe.png", "type": "input"})
    theirs = await bob.client.get("/view", params={"filename": "probe.png", "type": "input"})
    assert mine.content == png(color=(1, 1, 1)) and theirs.content == png(color=(2, 2, 2))


async def test_concurrent_uploads_of_one_name_get_distinct_names(alice: Caller) -> None:
    images = [png(color=(i, i, i)) for i in range(5)]
    responses = await asyncio.gather(*(alice.upload(data) for data in images))
    names = sorted(r.json()["name"] for r in responses)
    assert names == ["probe (1).png", "probe (2).png", "probe (3).png", "probe (4).png", "probe.png"]
    for response, data in zip(responses, images, strict=True):
        view = await alice.client.get(
            "/api/view", params={"filename": response.json()["name"], "type": "input"}
        )
        assert view.content == data


async def test_both_prefixes_and_any_file_kind(alice: Caller) -> None:
    bare = await alice.client.post(
        "/upload/image", files={"image": ("clip.wav", b"RIFF....WAVE", "audio/wav")}
    )
    assert bare.status_code == 200 and bare.json()["name"] == "clip.wav"
    view = await alice.client.get("/view", params={"filename": "clip.wav", "type": "input"})
    assert view.content == b"RIFF....WAVE" and view.headers["content-type"].startswith("audio/")


@pytest.mark.parametrize(
    "fields",
    [
        {"type": "bogus"},  # ComfyUI: 500
        {"type": ""},  # ComfyUI: 500
        {"subfolder": "/etc"},
        {"subfolder": "a/../../b"},
    ],
)
async def test_malformed_fields_are_400(alice: Caller, fields: dict[str, str]) -> None:
    response = await alice.upload(png(), **fields)
    assert response.status_code == 400 and response.content == b""


@pytest.mark.parametrize("filename", ["", "../x.png", "a/b.png", "..", "a\\b.png", "x\x07.png"])
async def test_bad_filenames_are_400(alice: Caller, filename: str) -> None:
    # Built by hand: httpx would percent-encode control characters in the name.
    boundary = "cc-test-boundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\n'
            f"Content-Type: image/png\r\n\r\n"
        ).encode()
        + png()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    response = await alice.client.post(UPLOAD, content=body, headers=headers)
    assert response.status_code == 400 and response.content == b""


async def test_non_multipart_bodies_are_400(alice: Caller) -> None:
    for kwargs in (
        {"json": {"image": "x"}},
        {"content": b"garbage", "headers": {"content-type": "multipart/form-data; boundary=zz"}},
        {"content": b"", "headers": {"content-type": "multipart/form-data"}},
        {"data": {"image": "not a file"}},
    ):
        response = await alice.client.post(UPLOAD, **kwargs)  # type: ignore[arg-type]
        assert response.status_code == 400, kwargs


async def test_pixel_limits(alice: Caller) -> None:
    assert (await alice.upload(png_header(16384, 4096), "edge.png")).status_code == 200
    for width, height in [(16385, 1), (1, 20000), (8193, 8193), (100_000, 100_000)]:
        response = await alice.upload(png_header(width, height), "big.png")
        assert response.status_code == 400
        assert "Image too large" in response.text and response.headers["content-type"].startswith(
            "text/plain"
        )
    mask = await alice.upload(png_header(16385, 1), "m.png", route="/api/upload/mask", original_ref="{}")
    assert mask.status_code == 400 and "Image too large" in mask.text


async def test_size_limit_with_content_length(alice: Caller) -> None:
    response = await alice.upload(b"\0" * (MAX_UPLOAD_BYTES + 1), "big.bin")
    assert response.status_code == 400
    assert response.text == "File too large: uploads are limited to 50 MB"
    assert (await alice.upload(b"\0" * 1024, "small.bin")).status_code == 200


async def test_size_limit_while_streaming(alice: Caller) -> None:
    """A chunked body (no Content-Length) is cut off once it passes the limit."""
    boundary = "cc-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield head
        block = b"\0" * (1 << 20)
        for _ in range(200):  # 200 MB offered
            sent += len(block)
            yield block
        yield f"\r\n--{boundary}--\r\n".encode()

    response = await alice.client.post(
        UPLOAD, content=body(), headers={"content-type": f"multipart/form-data; boundary={boundary}"}
    )
    assert response.status_code == 400 and "File too large" in response.text
    assert sent < 60 * (1 << 20)  # stopped reading soon after 50 MB


async def test_requires_credentials(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.post(UPLOAD, files={"image": ("a.png", png(), "image/png")})
    assert response.status_code == 401
