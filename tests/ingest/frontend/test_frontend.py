"""The stock frontend at "/": index, assets, ComfyUI's cache headers, template stubs, API precedence."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from services.ingest.frontend import static_dir
from services.ingest.frontend.cache import cache_control
from tests.ingest.compat_support import Caller

ROOT = static_dir()
pytestmark = pytest.mark.skipif(ROOT is None, reason="comfyui-frontend-package is not installed")

NO_STORE_INDEX = {"cache-control": "no-store, must-revalidate", "pragma": "no-cache", "expires": "0"}


def asset(suffix: str) -> str:
    assert ROOT is not None
    return "/" + next((ROOT / "assets").glob(f"*{suffix}")).relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", ["/", "/api/"])
async def test_index(anonymous: httpx.AsyncClient, path: str) -> None:
    response = await anonymous.get(path)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert {k: response.headers[k] for k in NO_STORE_INDEX} == NO_STORE_INDEX
    assert response.content == (Path(str(ROOT)) / "index.html").read_bytes()
    head = await anonymous.head(path)
    assert head.status_code == 200 and head.content == b""


async def test_assets_with_comfyui_cache_headers(anonymous: httpx.AsyncClient) -> None:
    script = await anonymous.get(asset(".js"))
    assert script.status_code == 200 and script.headers["cache-control"] == "no-store"
    assert "javascript" in script.headers["content-type"]
    style = await anonymous.get(asset(".css"))
    assert style.status_code == 200 and style.headers["cache-control"] == "no-store"
    icons = await anonymous.get("/materialdesignicons.min.css")
    assert icons.status_code == 200
    core = await anonymous.get("/extensions/core/groupNode.js")
    assert core.status_code == 200
    favicon = await anonymous.get("/assets/favicon.ico")
    assert favicon.status_code == 200 and favicon.headers["cache-control"] == "public, max-age=86400"
    missing = await anonymous.get("/assets/nope.png")
    assert missing.status_code == 404 and missing.headers["cache-control"] == "public, max-age=3600"


async def test_templates_are_empty_json(anonymous: httpx.AsyncClient) -> None:
    for path, body in (
        ("/templates/index.json", []),
        ("/templates/index.fr.json", []),
        ("/templates/index_logo.json", {}),
    ):
        response = await anonymous.get(path)
        assert response.status_code == 200 and response.json() == body, path
        assert response.headers["content-type"] == "application/json"  # else the UI assumes no index
        assert response.headers["cache-control"] == "no-store"
    assert (await anonymous.get("/templates/default.json")).status_code == 404


async def test_user_css_is_404(anonymous: httpx.AsyncClient, alice: Caller) -> None:
    assert (await anonymous.get("/user.css")).status_code == 404
    assert (await alice.client.get("/api/userdata/user.css")).status_code == 404


async def test_api_routes_win_over_static_files(alice: Caller, anonymous: httpx.AsyncClient) -> None:
    features = await anonymous.get("/api/features")
    assert features.headers["content-type"] == "application/json"
    assert (await alice.client.get("/api/settings")).json() == {}
    assert (await anonymous.get("/api/nonexistent")).status_code == 404
    assert (await anonymous.get("/../pyproject.toml")).status_code == 404


def test_cache_policy() -> None:
    assert cache_control("/assets/a.js", 200) == "no-store"
    assert cache_control("/templates/index.en.json", 200) == "no-store"
    assert cache_control("/x.PNG", 200) == "public, max-age=86400"
    assert cache_control("/x.png", 302) == "no-cache"
    assert cache_control("/x.png", 500) is None
    assert cache_control("/api/view", 200) is None
