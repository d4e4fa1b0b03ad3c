"""/users, /api/user, /settings, /userdata, /v2/userdata: ComfyUI's recorded answers, per-user isolation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ingest.compat_support import Caller

_TIMES = ("modified", "created")


def survey(fixtures_dir: Path) -> list[dict[str, Any]]:
    return json.loads((fixtures_dir / "http" / "endpoint-survey-0.33.0.json").read_text())["exchanges"]


def _without_times(value: Any) -> Any:
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    if isinstance(value, dict):
        return {k: ("<t>" if k in _TIMES else _without_times(v)) for k, v in value.items()}
    return value


# The request bodies the survey sent (the recording keeps only the responses of these POSTs).
_BODIES = {
    "/api/settings": {"Comfy.Probe.A": 1, "Comfy.Probe.B": "x"},
    "/api/settings/Comfy.Probe.C": {"nested": True},
    "/api/userdata/workflows%2Fprobe.json?overwrite=true&full_info=false": {"a": 1},
    "/api/userdata/workflows%2Fprobe.json?overwrite=false": {"a": 2},
    "/api/userdata/workflows%2Fprobe2.json?full_info=true": [],
}


async def test_recorded_survey(alice: Caller, fixtures_dir: Path) -> None:
    """Every users/settings/userdata exchange of the 0.33.0 survey, in order, on a fresh user."""
    relevant = ("/api/settings", "/api/userdata", "/api/v2/userdata")  # /api/users: see test_users
    for exchange in survey(fixtures_dir):
        method, path = exchange["request"]["method"], exchange["request"]["path"]
        if not path.startswith(relevant):
            continue
        expected = exchange["response"]
        body = _BODIES.get(path)
        content = json.dumps(body).encode() if body is not None else None
        response = await alice.client.request(method, path, content=content)
        label = f"{method} {path}"
        assert response.status_code == expected["status"], label
        if "body_text" in expected:
            assert response.text == expected["body_text"], label
            assert response.headers["content-type"] == "text/plain; charset=utf-8", label
        elif "body" in expected:
            assert _without_times(response.json()) == _without_times(expected["body"]), label
        else:
            assert response.content == b"", label
        for name in ("Content-Type", "Content-Disposition", "X-Content-Type-Options"):
            if name in expected.get("headers", {}) and "body_text" not in expected:
                assert response.headers[name].startswith(expected["headers"][name].split(";")[0]), label


async def test_recorded_settings_round_trip(alice: Caller, fixtures_dir: Path) -> None:
    exchanges = json.loads((fixtures_dir / "http" / "settings-0.33.0.json").read_text())["exchanges"]
    assert (await alice.client.get("/api/settings")).json() == {}
    assert (await alice.client.get("/api/settings/Comfy.ColorPalette")).json() is None
    for exchange in exchanges[2:]:
        request, expected = exchange["request"], exchange["response"]
        content = json.dumps(request["body"]).encode() if "body" in request else None
        response = await alice.client.request(request["method"], request["path"], content=content)
        assert response.status_code == expected["status"]
        if request["method"] == "GET":
            assert response.json() == expected["body"]
        else:
            assert response.content == b""


async def test_users(alice: Caller, fixtures_dir: Path) -> None:
    response = await alice.client.get("/api/users")
    assert response.json() == {"storage": "server", "migrated": True}
    assert (await alice.client.get("/users")).json() == {"storage": "server", "migrated": True}
    created = await alice.client.post("/api/users", json={"username": "probe"})
    assert created.status_code == 200 and created.json() == str(alice.id)  # a JSON string, as ComfyUI
    missing = await alice.client.post("/api/users", json={})
    assert missing.status_code == 400 and missing.json() == {"error": "username not provided"}
    assert (await alice.client.post("/api/users", content=b"{bad")).status_code == 400


async def test_cloud_user(alice: Caller) -> None:
    response = await alice.client.get("/api/user")
    assert response.json() == {"id": str(alice.id), "name": "alice", "email": None, "status": "active"}
    assert (await alice.client.get("/user")).status_code == 404  # Cloud-only: no bare alias


async def test_settings_file_is_userdata(alice: Caller) -> None:
    await alice.client.post("/api/settings/Comfy.X", json=[1, 2])
    file = await alice.client.get("/api/userdata/comfy.settings.json")
    assert file.status_code == 200 and file.content == json.dumps({"Comfy.X": [1, 2]}, indent=4).encode()
    await alice.client.post("/api/userdata/comfy.settings.json", content=b"not json")
    assert (await alice.client.get("/api/settings")).json() == {}  # corrupted: {} as ComfyUI


async def test_concurrent_setting_writes_all_land(alice: Caller) -> None:
    await asyncio.gather(*(alice.client.post(f"/api/settings/Comfy.K{i}", json=i) for i in range(12)))
    assert (await alice.client.get("/api/settings")).json() == {f"Comfy.K{i}": i for i in range(12)}


async def test_malformed_settings_bodies_are_400(alice: Caller) -> None:
    for path, content in (("/api/settings", b"{bad"), ("/api/settings", b"[1]"), ("/api/settings/x", b"")):
        response = await alice.client.post(path, content=content)
        assert response.status_code == 400, (path, content)
    assert (await alice.client.get("/api/settings")).json() == {}


async def test_listing_options(alice: Caller) -> None:
    for path in (
        "workflows/a.json",
        "workflows/sub/b.json",
        "workflows/.index.json",
        "workflows/.hidden/c.json",
    ):
        assert (
            await alice.client.post(f"/api/userdata/{path.replace('/', '%2F')}", content=b"{}")
        ).status_code == 200

    async def listing(**params: str) -> Any:
        response = await alice.client.get("/api/userdata", params={"dir": "workflows", **params})
        assert response.status_code == 200
        return response.json()

    assert await listing() == ["a.json"]  # globs skip dot files, and do not recurse
    assert await listing(recurse="true") == ["a.json", "sub/b.json"]
    assert await listing(recurse="true", split="true") == [
        ["a.json", "a.json"],
        ["sub/b.json", "sub", "b.json"],
    ]
    info = await listing(recurse="true", full_info="true", split="true")  # full_info wins over split
    assert [i["path"] for i in info] == ["a.json", "sub/b.json"]
    assert set(info[0]) == {"path", "size", "modified", "created"} and info[0]["size"] == 2
    assert (await alice.client.get("/api/userdata", params={"dir": "workflows/a.json"})).json() == []
    assert (await alice.client.get("/api/userdata", params={"dir": "workflows/sub/"})).json() == ["b.json"]


async def test_v2_listing(alice: Caller) -> None:
    for path in ("B.json", "workflows/x/c.json", "workflows/a.json"):
        await alice.client.post(f"/api/userdata/{path.replace('/', '%2F')}", content=b"1")
    entries = (await alice.client.get("/api/v2/userdata")).json()
    assert [(e["type"], e["path"]) for e in entries] == [
        ("directory", "workflows"),
        ("directory", "workflows/x"),
        ("file", "workflows/a.json"),
        ("file", "B.json"),
        ("file", "workflows/x/c.json"),
    ]
    assert set(entries[0]) == {"name", "path", "type"}
    assert set(entries[2]) == {"name", "path", "type", "size", "modified"}
    assert isinstance(entries[2]["modified"], float)
    sub = (await alice.client.get("/api/v2/userdata", params={"path": "workflows%2Fx"})).json()
    assert [e["path"] for e in sub] == ["workflows/x/c.json"]
    for path, status, text in (
        ("nope", 404, "Requested path not found"),
        ("B.json", 400, "Requested path is not a directory"),
        ("../..", 400, "Invalid path requested"),
    ):
        response = await alice.client.get("/api/v2/userdata", params={"path": path})
        assert (response.status_code, response.text) == (status, text)


async def test_files_read_write_move_delete(alice: Caller) -> None:
    body = b'{"nodes": []}'
    written = await alice.client.post("/api/userdata/workflows%2Fw.json?full_info=true", content=body)
    assert written.json()["path"] == "workflows/w.json" and written.json()["size"] == len(body)
    read = await alice.client.get("/api/userdata/workflows%2Fw.json")
    assert read.content == body
    assert read.headers["content-type"] == "application/json"
    assert read.headers["content-disposition"] == "attachment"
    moved = await alice.client.post("/api/userdata/workflows%2Fw.json/move/workflows%2Fv.json?full_info=true")
    assert moved.json()["path"] == "workflows/v.json"
    assert moved.json()["modified"] == written.json()["modified"]  # a rename keeps the content's time
    assert (await alice.client.get("/api/userdata/workflows%2Fw.json")).status_code == 404
    await alice.client.post("/api/userdata/workflows%2Fu.json", content=b"u")
    clash = await alice.client.post(
        "/api/userdata/workflows%2Fu.json/move/workflows%2Fv.json?overwrite=false"
    )
    assert (clash.status_code, clash.text) == (409, "File already exists")
    over = await alice.client.post("/api/userdata/workflows%2Fu.json/move/workflows%2Fv.json")
    assert over.json() == "workflows/v.json"
    assert (await alice.client.get("/api/userdata/workflows%2Fv.json")).content == b"u"
    assert (await alice.client.delete("/api/userdata/workflows%2Fv.json")).status_code == 204
    assert (await alice.client.delete("/api/userdata/workflows%2Fv.json")).status_code == 404
    missing = await alice.client.post("/api/userdata/nope.json/move/x.json")
    assert missing.status_code == 404


async def test_user_css_and_dangerous_types(alice: Caller) -> None:
    await alice.client.post("/api/userdata/user.css", content=b"body{}")
    css = await alice.client.get("/api/userdata/user.css")
    assert (
        css.headers["content-type"].startswith("text/css") and css.headers["content-disposition"] == "inline"
    )
    await alice.client.post("/api/userdata/x.html", content=b"<script></script>")
    html = await alice.client.get("/api/userdata/x.html")
    assert html.headers["content-type"] == "application/octet-stream"
    assert html.headers["content-disposition"] == "attachment"
    assert html.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "path", ["..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "a%2F..%2F..%2Fb", "%252E%252E%252Fx"]
)
async def test_traversal_is_403(alice: Caller, path: str) -> None:
    for method in ("GET", "POST", "DELETE"):
        response = await alice.client.request(method, f"/api/userdata/{path}", content=b"x")
        assert (response.status_code, response.content) == (403, b""), (method, path)
    move = await alice.client.post(f"/api/userdata/a.json/move/{path}")
    assert move.status_code in (403, 404)
    if "%25" not in path:  # (a query value is decoded once, then once more: "%2E" is no dot)
        listing = await alice.client.get("/api/userdata", params={"dir": path.replace("%2F", "/")})
        assert (listing.status_code, listing.text) == (403, "Invalid directory")


async def test_directory_and_file_conflicts_are_400(alice: Caller) -> None:
    await alice.client.post("/api/userdata/a%2Fb.json", content=b"1")
    assert (await alice.client.post("/api/userdata/a", content=b"x")).status_code == 400  # a directory
    assert (await alice.client.post("/api/userdata/a%2Fb.json%2Fc", content=b"x")).status_code == 400
    assert (await alice.client.post("/api/userdata/a/move/z")).status_code == 400  # moving a directory
    assert (await alice.client.get("/api/userdata/a")).status_code == 404  # a directory is no file
    assert (
        await alice.client.post("/api/userdata/a/b.json", content=b"x")
    ).status_code == 404  # two segments


async def test_body_limit(alice: Caller) -> None:
    response = await alice.client.post("/api/userdata/big.json", content=b"x" * (16 * 1024 * 1024 + 1))
    assert response.status_code == 413 and response.content == b""


async def test_another_users_data_is_unknown(alice: Caller, bob: Caller) -> None:
    await alice.client.post("/api/userdata/workflows%2Fsecret.json", content=b"{}")
    await alice.client.post("/api/settings/Comfy.Secret", json="s3cret")
    assert (await bob.client.get("/api/settings")).json() == {}
    assert (await bob.client.get("/api/settings/Comfy.Secret")).json() is None
    foreign = await bob.client.get("/api/userdata/workflows%2Fsecret.json")
    unknown = await bob.client.get("/api/userdata/workflows%2Fnever.json")
    assert (foreign.status_code, foreign.content) == (unknown.status_code, unknown.content) == (404, b"")
    listing = await bob.client.get("/api/userdata", params={"dir": "workflows"})
    assert (listing.status_code, listing.text) == (404, "Directory not found")
    assert (await bob.client.get("/api/v2/userdata")).json() == []
    assert (await bob.client.delete("/api/userdata/workflows%2Fsecret.json")).status_code == 404
    assert (await bob.client.post("/api/userdata/workflows%2Fsecret.json/move/x.json")).status_code == 404
    # Bob writing the same path makes his own file; Alice's is untouched.
    await bob.client.post("/api/userdata/workflows%2Fsecret.json", content=b"bob")
    assert (await alice.client.get("/api/userdata/workflows%2Fsecret.json")).content == b"{}"


async def test_requires_credentials(anonymous: httpx.AsyncClient) -> None:
    for path in (
        "/api/users",
        "/api/settings",
        "/api/userdata?dir=workflows",
        "/api/v2/userdata",
        "/api/user",
    ):
        assert (await anonymous.get(path)).status_code == 401, path
