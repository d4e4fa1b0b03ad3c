"""GET /view on Google Cloud Storage (the real emulator): a 302 to a short-lived V4 signed URL, or the
bytes streamed when the credentials cannot sign; previews are always inline."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

from comfy_cloud.storage import Storage
from integration.support.gcs_emulator import GCSEmulator
from tests.ingest.compat_support import BUCKET, Caller, png, signing_credentials


@pytest.fixture(params=["signed", "anonymous"])
def signed(request: pytest.FixtureRequest) -> bool:
    return request.param == "signed"


@pytest.fixture
def storage(
    signed: bool, gcs_emulator: GCSEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Storage]:
    from comfy_cloud.storage.gcs import GCSStorage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.host)
    signer = signing_credentials() if signed else None
    storage = GCSStorage(
        BUCKET, f"view-{uuid.uuid4().hex[:12]}", signing_credentials=signer, spool_dir=tmp_path
    )
    yield storage
    storage.close()


async def test_view_redirects_or_streams(alice: Caller, bob: Caller, signed: bool) -> None:
    data = png(3, 3, (9, 8, 7))
    assert (await alice.upload(data, "out.png", type="output")).status_code == 200
    response = await alice.client.get("/api/view", params={"filename": "out.png"})
    if not signed:
        # Anonymous emulator credentials cannot sign: streamed, with ComfyUI's headers.
        assert response.status_code == 200 and response.content == data
        assert response.headers["content-type"] == "image/png"
        assert response.headers["content-disposition"] == 'filename="out.png"'
        assert response.headers["x-content-type-options"] == "nosniff"
    else:
        assert response.status_code == 302
        assert response.headers["cache-control"] == "no-store"
        url = response.headers["location"]
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
        assert int(query["X-Goog-Expires"]) <= 900
        assert query["response-content-type"] == "image/png"
        assert query["response-content-disposition"].startswith('inline; filename="out.png"')
        # The URL is its own authorisation: no API key follows the redirect.
        async with httpx.AsyncClient() as plain:
            fetched = await plain.get(url)
        assert fetched.status_code == 200 and fetched.content == data
    foreign = await bob.client.get("/api/view", params={"filename": "out.png"})
    assert foreign.status_code == 404 and foreign.content == b""


async def test_dangerous_types_are_signed_as_downloads(alice: Caller, signed: bool) -> None:
    await alice.client.post("/api/upload/image", files={"image": ("p.html", b"<b>x</b>", "text/html")})
    response = await alice.client.get("/api/view", params={"filename": "p.html", "type": "input"})
    assert response.status_code == (302 if signed else 200)
    if signed:
        query = {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}
        assert query["response-content-type"] == "application/octet-stream"
        assert query["response-content-disposition"].startswith("attachment;")
    else:
        assert response.headers["content-type"] == "application/octet-stream"


async def test_previews_are_inline(alice: Caller, signed: bool) -> None:
    await alice.upload(png(6, 6), "p.png")
    response = await alice.client.get(
        "/api/view", params={"filename": "p.png", "type": "input", "preview": "jpeg;70"}
    )
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).format == "JPEG"
