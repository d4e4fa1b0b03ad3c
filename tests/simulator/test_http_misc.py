"""Info routes, version differences, request gatekeeping, and every recorded POST /prompt error."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import websockets

from comfy_cloud.simulator import SimulatorServer
from tests.simulator.support import FIXTURES, Start, client_for, fixture, workflow

SERVER_ERROR = "500 Internal Server Error\n\nServer got itself in trouble"


def survey(version: str) -> dict[str, dict]:
    exchanges = fixture(f"http/endpoint-survey-{version}.json")["exchanges"]
    return {e.get("label", ""): e for e in exchanges if "request" in e}


@pytest.mark.parametrize("version", ["0.33.0", "0.3.64"])
async def test_features_system_stats_models(start_sim: Start, version: str) -> None:
    server = await start_sim(version=version)
    async with client_for(server) as http:
        recorded_features = fixture(f"http/features-{version}.json")
        flags = (recorded_features.get("response") or recorded_features["exchanges"][0]["response"])["body"]
        for path in ("/features", "/api/features"):
            assert (await http.get(path)).json() == flags
        stats = (await http.get("/api/system_stats")).json()
        recorded_stats = fixture(f"http/system_stats-{version}.json")["response"]["body"]
        assert list(stats["system"]) == list(recorded_stats["system"])
        assert list(stats["devices"][0]) == list(recorded_stats["devices"][0])
        assert stats["system"]["comfyui_version"] == version
        assert (
            stats["system"]["required_frontend_version"]
            == recorded_stats["system"]["required_frontend_version"]
        )
        models = next(
            e
            for e in fixture(f"http/endpoint-survey-{version}.json")["exchanges"]
            if e.get("label") in ("GET /api/models", "/models")
        )
        assert (await http.get("/models")).json() == models["response"]["body"]
        assert (await http.get("/api/models/checkpoints")).json() == []
        nope = await http.get("/api/models/nope")
        assert nope.status_code == 404 and nope.content == b""
        assert (await http.get("/embeddings")).json() == []
        assert (await http.get("/api/extensions")).json() == []
        queue = await http.get("/queue")
        assert queue.json() == {"queue_running": [], "queue_pending": []}
        assert queue.headers["content-type"] == "application/json; charset=utf-8"
        head = await http.head("/api/prompt")
        assert head.status_code == 200 and head.content == b""


@pytest.mark.parametrize("version", ["0.33.0", "0.3.64"])
async def test_object_info_entries_are_the_recorded_ones(start_sim: Start, version: str) -> None:
    server = await start_sim(version=version)
    recorded = fixture(f"object_info-{version}.json")
    async with client_for(server) as http:
        catalogue = (await http.get("/api/object_info")).json()
        assert {"EmptyImage", "SaveImage", "ProbeSleep", "ProbeFail", "ProbePreview"} <= set(catalogue)
        for name, entry in catalogue.items():
            if name in recorded and name not in ("LoadImage", "LoadImageMask"):
                assert entry == recorded[name], name
        assert (await http.get("/object_info/SaveImage")).json() == {"SaveImage": recorded["SaveImage"]}
        assert (await http.get("/api/object_info/NoSuchNode")).json() == {}


async def test_full_catalogue_is_served_with_the_probe_nodes(start_sim: Start) -> None:
    server = await start_sim(full_catalogue=True)
    async with client_for(server) as http:
        catalogue = (await http.get("/object_info")).json()
    assert len(catalogue) == 888 + 2  # the recorded 888 classes plus ProbeSleep and ProbeFail


async def test_origin_and_fetch_site_checks(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    host = sim.url.removeprefix("http://")
    cross = await http.get("/api/prompt", headers={"Origin": "http://evil.example"})
    assert cross.status_code == 403 and cross.content == b""
    localhost = await http.get("/api/prompt", headers={"Origin": f"http://localhost:{sim.port}"})
    assert localhost.status_code == 403  # a different loopback name is still a different host
    same = await http.get("/api/prompt", headers={"Origin": f"http://{host}"})
    assert same.status_code == 200
    fetch_site = await http.get("/api/prompt", headers={"Sec-Fetch-Site": "cross-site"})
    assert fetch_site.status_code == 403 and fetch_site.content == b""
    options = await http.options("/api/prompt", headers={"Origin": f"http://{host}"})
    assert options.status_code == 200 and options.content == b""
    post = await http.post("/api/prompt", headers={"Origin": "http://gateway.example:9000"}, json={})
    assert post.status_code == 403
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(sim.ws_url, origin="http://gateway.example:9000")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403


async def test_fetch_site_is_not_checked_on_0_3_64(legacy: SimulatorServer) -> None:
    async with client_for(legacy) as http:
        assert (await http.get("/prompt", headers={"Sec-Fetch-Site": "cross-site"})).status_code == 200


async def test_plain_http_on_ws_and_unknown_routes(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    expected = survey("0.33.0")["GET /ws"]["response"]
    ws = await http.get("/ws")
    assert (ws.status_code, ws.text, ws.headers["content-type"]) == (
        400,
        expected["body_text"],
        "text/plain; charset=utf-8",
    )
    unknown = await http.get("/api/nonexistent")
    assert unknown.status_code == 404 and unknown.content == b""
    assert unknown.headers["content-type"] == "application/octet-stream"
    assert (await http.get("/jobs")).status_code == 404  # the jobs API has no bare twin
    assert (await http.get("/api/api/jobs")).status_code == 200


async def test_unhandled_errors_are_aiohttp_500s(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    cases = [
        ("/prompt", b"{not json"),
        ("/api/prompt", b'{"prompt": [1, 2]}'),
        ("/api/prompt", b'{"prompt": {}, "number": "x"}'),
        ("/api/queue", b"nope"),
        ("/api/free", b"nope"),
        ("/api/history", b"nope"),
    ]
    for path, body in cases:
        response = await http.post(path, content=body, headers={"content-type": "application/json"})
        assert (response.status_code, response.text) == (500, SERVER_ERROR), path
        assert response.headers["content-type"] == "text/plain; charset=utf-8"
    for path in ("/api/interrupt", "/interrupt"):
        assert (await http.post(path, content=b"nope")).status_code == 200  # bad JSON = global interrupt
    assert (await http.post("/api/free", json={"unload_models": True, "free_memory": True})).content == b""


def _error_cases() -> list[tuple[str, Path]]:
    return [
        (version, path)
        for version in ("0.33.0", "0.3.64")
        for path in sorted((FIXTURES / "errors" / version).glob("*.json"))
    ]


@pytest.mark.parametrize(("version", "path"), _error_cases(), ids=lambda v: getattr(v, "stem", v))
async def test_recorded_prompt_errors(start_sim: Start, version: str, path: Path) -> None:
    """Every errors/ fixture, answered byte-for-byte in status, type and body (tracebacks aside)."""
    case = fixture(f"errors/{version}/{path.name}")
    server = await start_sim(version=version, full_catalogue=True)
    request, expected = case["request"], case["response"]
    async with client_for(server) as http:
        if "raw_body" in request:
            response = await http.post(
                request["path"], content=request["raw_body"], headers=request["headers"]
            )
        else:
            response = await http.post(request["path"], json=request["body"])
    assert response.status_code == expected["status"]
    assert response.headers["content-type"] == expected["content_type"]
    if "body_text" in expected:
        assert response.text == expected["body_text"]
        return
    body = response.json()
    for error in [body["error"], *(e for n in body["node_errors"].values() for e in n["errors"])]:
        error["extra_info"].pop("traceback", None)
    for error in [
        expected["body"]["error"],
        *(e for n in expected["body"]["node_errors"].values() for e in n["errors"]),
    ]:
        error["extra_info"].pop("traceback", None)
    assert body == expected["body"]


async def test_partial_validity_and_min_value(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    invalid = await http.post("/api/prompt", json={"prompt": workflow("p5a-validation-error-width0")})
    assert invalid.status_code == 400
    assert invalid.json()["node_errors"]["1"]["errors"][0]["type"] == "value_smaller_than_min"
    partial = await http.post("/api/prompt", json={"prompt": workflow("p5b-partial-validity")})
    assert partial.status_code == 200 and partial.json()["node_errors"]
    assert partial.json()["number"] == 1  # the rejected request used up number 0
    queued = (await http.get("/api/queue")).json()
    items = queued["queue_running"] + queued["queue_pending"]
    history = (await http.get("/api/history")).json()
    outputs = [item[4] for item in items] or [entry["prompt"][4] for entry in history.values()]
    assert outputs and all(o != [] for o in outputs)
