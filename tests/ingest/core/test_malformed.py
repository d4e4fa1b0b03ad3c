"""Malformed input of every kind answers 4xx in the route's own error style, never 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.ingest.core.conftest import PROMPT, Caller, Env, MakeEnv


def _prompt_style(body: Any) -> bool:
    return (
        isinstance(body, dict)
        and set(body) == {"error", "node_errors"}
        and set(body["error"]) == {"type", "message", "details", "extra_info"}
    )


def _comfy_style(body: Any) -> bool:
    return isinstance(body, dict) and isinstance(body.get("error"), str)


def _cloud_style(body: Any) -> bool:
    return isinstance(body, dict) and set(body) == {"code", "message"}


BAD_JSON_BODIES = [
    b"{not json",
    b'{"prompt": NaN}',
    b'{"prompt": {"1": {"class_type": "EmptyImage", "inputs": {"width": Infinity}}}}',
    b'{"prompt": 1e999}',
    b'{"prompt": {"1": {"class_type": "Empty\\u0000Image", "inputs": {}}}}',
    b'{"prompt": {"\\ud800": {}}}',
    b"\xff\xfe\x00",
    b"[" * 5000 + b"]" * 5000,
    b'{"a": ' * 200 + b"1" + b"}" * 200,
    b'{"number": ' + b"9" * 5000 + b', "prompt": {}}',
]


@pytest.mark.parametrize("raw", BAD_JSON_BODIES, ids=range(len(BAD_JSON_BODIES)))
async def test_post_prompt_bad_json(env: Env, alice: Caller, raw: bytes) -> None:
    response = await alice.client.post(
        "/api/prompt", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert _prompt_style(response.json())


@pytest.mark.parametrize(
    "body",
    [
        [1, 2],
        "prompt",
        {"prompt": [1, 2]},
        {"prompt": "x"},
        {"prompt": None},
        {"prompt": {"1": "not a node"}},
        {"prompt": {"1": {"class_type": ["list"]}}},
        {"prompt": {"1": {"class_type": 5, "inputs": {}}}},
        {"prompt": PROMPT, "number": "five"},
        {"prompt": PROMPT, "number": None},
        {"prompt": PROMPT, "number": 10**400},
        {"prompt": PROMPT, "extra_data": [1]},
        {"prompt": PROMPT, "partial_execution_targets": "2"},
        {"prompt": PROMPT, "prompt_id": 12},
        {"prompt": PROMPT, "prompt_id": "A2B4C6D8-0000-4000-8000-000000000000"},
        {"prompt": {"1": {"class_type": "EmptyImage", "inputs": "x"}, "2": PROMPT["2"]}},
        {
            "prompt": {
                "2": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "x"}}
            }
        },
        {
            "prompt": {
                "2": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}}
            }
        },
    ],
)
async def test_post_prompt_bad_bodies(env: Env, alice: Caller, body: Any) -> None:
    response = await alice.client.post("/api/prompt", json=body)
    assert response.status_code == 400, response.text
    assert _prompt_style(response.json())


async def test_post_prompt_empty_body_is_no_prompt(env: Env, alice: Caller) -> None:
    response = await alice.client.post("/api/prompt", content=b"")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "no_prompt"


async def test_oversized_bodies(make_env: MakeEnv) -> None:
    async with make_env(max_json_body=1000, max_upload_size=5000) as env:
        caller = await env.caller()
        big = {"prompt": PROMPT, "extra_data": {"blob": "x" * 2000}}
        response = await caller.client.post("/api/prompt", json=big)
        assert response.status_code == 413 and _prompt_style(response.json())
        # Over the whole-request limit: refused before the route reads anything.
        huge = {"prompt": PROMPT, "extra_data": {"blob": "x" * 6000}}
        response = await caller.client.post("/api/prompt", json=huge)
        assert response.status_code == 413 and _prompt_style(response.json())
        response = await caller.client.post("/api/queue", json=huge)
        assert response.status_code == 413 and _comfy_style(response.json())

        # Chunked (no Content-Length): the streaming guard stops it.
        async def chunks() -> Any:
            for _ in range(10):
                yield b"x" * 700

        for path, style in (("/api/prompt", _prompt_style), ("/api/jobs/cancel", _comfy_style)):
            response = await caller.client.post(path, content=chunks())
            assert response.status_code == 413, path
            assert style(response.json()), response.text


async def test_invalid_content_length(env: Env, alice: Caller) -> None:
    request = alice.client.build_request("POST", "/api/prompt", content=b"{}")
    request.headers["content-length"] = "abc"
    response = await alice.client.send(request)
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [
        ("POST", "/api/queue", b"{oops"),
        ("POST", "/queue", b"[1]"),
        ("POST", "/api/queue", b'{"delete": "abc"}'),
        ("POST", "/api/queue", b""),
        ("POST", "/api/history", b"{oops"),
        ("POST", "/history", b'{"delete": 5}'),
        ("POST", "/api/history", b"null"),
        ("GET", "/api/history?max_items=x", b""),
        ("GET", "/history?offset=1.5", b""),
        ("GET", "/api/jobs?limit=x", b""),
        ("GET", "/api/jobs?status=bogus", b""),
        ("GET", "/api/jobs?workflow_id=a%00b", b""),
        ("POST", "/api/jobs/cancel", b"{oops"),
        ("POST", "/api/jobs/cancel", b'{"job_ids": "x"}'),
        ("POST", "/api/jobs/cancel", b"[]"),
        ("POST", "/api/jobs/cancel", b'{"job_ids": [1, null]}'),
    ],
)
async def test_comfy_routes_answer_bad_input_in_their_style(
    env: Env, alice: Caller, method: str, path: str, raw: bytes
) -> None:
    response = await alice.client.request(method, path, content=raw)
    assert response.status_code == 400, response.text
    assert _comfy_style(response.json())


@pytest.mark.parametrize("path", ["/api/history_v2?max_items=x", "/api/history_v2?offset=y"])
async def test_cloud_routes_answer_bad_input_in_their_style(env: Env, alice: Caller, path: str) -> None:
    response = await alice.client.get(path)
    assert response.status_code == 400
    assert _cloud_style(response.json()) and response.json()["code"] == "invalid_request"


@pytest.mark.parametrize("raw", [b"", b"{oops", b"[]", b'{"prompt_id": 5}', b'{"prompt_id": "x\\u0000"}'])
async def test_interrupt_accepts_anything(env: Env, alice: Caller, raw: bytes) -> None:
    response = await alice.client.post("/api/interrupt", content=raw)
    assert response.status_code == 200 and response.content == b""


@pytest.mark.parametrize(
    "path",
    [
        "/api/jobs/not-a-uuid",
        "/api/jobs/%00",
        "/api/jobs/" + "9" * 300,
        "/api/job/not-a-uuid/status",
        "/api/history/not-a-uuid",
        "/api/history_v2/not-a-uuid",
    ],
)
async def test_malformed_ids_are_unknown_ids(env: Env, alice: Caller, path: str) -> None:
    response = await alice.client.get(path)
    assert response.status_code in (200, 404)
    assert response.status_code != 200 or response.json() == {}


async def test_cancel_with_malformed_id(env: Env, alice: Caller) -> None:
    response = await alice.client.post("/api/jobs/not-a-uuid/cancel")
    assert response.status_code == 200 and response.json() == {"cancelled": False}


async def test_nothing_reaches_the_guard(env: Env, alice: Caller, caplog: pytest.LogCaptureFixture) -> None:
    """All of the above ran without a single unhandled error in this app (checked on a sample)."""
    for raw in BAD_JSON_BODIES:
        await alice.client.post("/prompt", content=raw)
    assert not [r for r in caplog.records if r.name == "services.ingest.middleware"]


async def test_unexpected_errors_become_logged_500s_in_route_style(
    env: Env, alice: Caller, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.ingest.jobs import service as jobs_service
    from services.ingest.prompts import service as prompt_service

    async def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr(prompt_service, "queue_remaining", boom)
    monkeypatch.setattr(jobs_service, "list_jobs", boom)
    monkeypatch.setattr(jobs_service, "history_v2", boom)
    response = await alice.client.get("/api/prompt")
    assert response.status_code == 500 and _prompt_style(response.json())
    assert response.json()["error"]["type"] == "server_error"
    response = await alice.client.get("/api/jobs")
    assert response.status_code == 500 and response.json() == {"error": "Internal server error"}
    response = await alice.client.get("/api/history_v2")
    assert response.status_code == 500 and response.json() == {
        "code": "internal_error",
        "message": "Internal server error",
    }
    assert any("unhandled error" in r.getMessage() for r in caplog.records)


async def test_unknown_route_and_method(env: Env, alice: Caller) -> None:
    assert (await alice.client.get("/api/nope")).status_code == 404
    response = await alice.client.delete("/api/prompt")
    assert response.status_code == 405


async def test_plain_http_on_the_websocket_route(env: Env) -> None:
    client: httpx.AsyncClient = env.client()
    response = await client.get("/ws")
    assert response.status_code == 400
