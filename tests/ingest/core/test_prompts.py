"""POST /prompt and GET /prompt against ComfyUI's recorded shapes."""

from __future__ import annotations

import asyncio
import copy
import uuid
from typing import Any

import pytest

from comfy_cloud.broadcast import PostgresBroadcaster
from comfy_cloud.broadcast.events import JOB_STATUS, JobEvent
from database.repositories.jobs import JobRepository
from tests.ingest.core.conftest import (
    PROMPT,
    Caller,
    Env,
    MakeEnv,
    add_file,
    load_fixture,
    register_catalogue,
)

ERROR_CASES = [
    "invalid_input_type",
    "invalid_prompt_id",
    "loadimage_missing_file",
    "missing_class_type",
    "no_outputs",
    "no_prompt",
    "required_input_missing",
    "return_type_mismatch",
    "unknown_class_type",
    "value_bigger_than_max",
]


def _without_tracebacks(body: Any) -> Any:
    """Tracebacks point into the validating code, which differs from ComfyUI's by construction."""
    if isinstance(body, dict):
        return {k: _without_tracebacks(v) for k, v in body.items() if k != "traceback"}
    if isinstance(body, list):
        return [_without_tracebacks(v) for v in body]
    return body


async def test_submit_answers_comfyui_shape_and_stores_the_job(env: Env, alice: Caller) -> None:
    subscription = env.broadcaster.subscribe()
    body = {
        "prompt": PROMPT,
        "client_id": "tab-1",
        "extra_data": {"extra_pnginfo": {"workflow": {"id": "wf-1"}}},
    }
    for path in ("/api/prompt", "/prompt"):
        response = await alice.client.post(path, json=body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert set(answer) == {"prompt_id", "number", "node_errors"}
        assert answer["node_errors"] == {}
        assert isinstance(answer["number"], int)
        job_id = uuid.UUID(answer["prompt_id"])
        async with env.db.session() as session:
            job = await JobRepository(session).get(alice.id, job_id)
        assert job is not None and job.status == "pending"
        assert job.client_id == "tab-1"
        assert job.required_nodes == ["EmptyImage", "SaveImage"]
        assert job.runnable_on == [env.catalogue]
        assert job.outputs_to_execute == ["2"]
        assert job.workflow_id == "wf-1"
        assert job.extra_data["client_id"] == "tab-1"
        assert isinstance(job.extra_data["create_time"], int)
        event = await anext(subscription)
        assert (event.type, event.job_id, event.user_id) == (JOB_STATUS, str(job_id), str(alice.id))
        assert event.data == {"status": "pending"}


async def test_get_prompt_counts_only_the_callers_jobs(env: Env, alice: Caller, bob: Caller) -> None:
    for _ in range(2):
        assert (await alice.client.post("/api/prompt", json={"prompt": PROMPT})).status_code == 200
    assert (await bob.client.post("/api/prompt", json={"prompt": PROMPT})).status_code == 200
    for path in ("/api/prompt", "/prompt"):
        assert (await alice.client.get(path)).json() == {"exec_info": {"queue_remaining": 2}}
    assert (await bob.client.get("/api/prompt")).json() == {"exec_info": {"queue_remaining": 1}}


async def test_client_prompt_id_number_and_repeat(env: Env, alice: Caller, bob: Caller) -> None:
    recorded = load_fixture("http/prompt-client-prompt-id-0.33.0.json")["exchanges"][0]
    body = copy.deepcopy(recorded["request"]["body"])
    body["prompt"] = PROMPT  # ProbeSleep is a test-only node of the recording
    response = await alice.client.post("/api/prompt", json=body)
    assert response.status_code == 200
    assert response.json() == recorded["response"]["body"]  # number 5 echoed as 5.0
    assert response.text.count("5.0") == 1

    # A repeat never runs twice; another user's id gets the very same answer (reveals nothing).
    again = await alice.client.post("/api/prompt", json={"prompt": PROMPT, "prompt_id": body["prompt_id"]})
    foreign = await bob.client.post("/api/prompt", json={"prompt": PROMPT, "prompt_id": body["prompt_id"]})
    assert again.status_code == foreign.status_code == 400
    assert again.json() == foreign.json()
    error = again.json()["error"]
    assert set(again.json()) == {"error", "node_errors"} and again.json()["node_errors"] == {}
    assert set(error) == {"type", "message", "details", "extra_info"}
    assert error["type"] == "duplicate_prompt_id" and body["prompt_id"] in error["details"]
    assert (await bob.client.get("/api/prompt")).json()["exec_info"]["queue_remaining"] == 0


async def test_the_pending_event_is_sent_by_the_insert_itself(make_env: MakeEnv, database_url: str) -> None:
    broadcaster = PostgresBroadcaster(database_url)  # on the app's own database: NOTIFY in the INSERT
    async with make_env(broadcaster=broadcaster) as env:
        caller = await env.caller()
        assert env.state.status_notification(caller.id, [(uuid.uuid4(), "pending")]) is not None
        subscription = broadcaster.subscribe()
        body = {"prompt": PROMPT, "prompt_id": str(uuid.uuid4())}
        assert (await caller.client.post("/api/prompt", json=body)).status_code == 200
        assert (await caller.client.post("/api/prompt", json=body)).status_code == 400  # no event
        await broadcaster.publish([JobEvent(user_id="nobody", job_id="", type="cc.test_marker")])
        async with asyncio.timeout(10):
            received = [await anext(subscription), await anext(subscription)]
    pending = JobEvent(
        user_id=str(caller.id), job_id=body["prompt_id"], type=JOB_STATUS, data={"status": "pending"}
    )
    assert received[0] == pending
    assert received[1].type == "cc.test_marker"  # nothing for the refused repeat


async def test_front_queues_ahead_with_a_negative_number(env: Env, alice: Caller) -> None:
    first = (await alice.client.post("/api/prompt", json={"prompt": PROMPT})).json()
    front = (await alice.client.post("/api/prompt", json={"prompt": PROMPT, "front": True})).json()
    assert front["number"] < 0
    pending = (await alice.client.get("/api/queue")).json()["queue_pending"]
    assert [item[1] for item in pending] == [front["prompt_id"], first["prompt_id"]]


@pytest.mark.parametrize("case", ERROR_CASES)
async def test_validation_errors_match_recordings(
    make_env: MakeEnv, object_info_full: dict[str, Any], case: str
) -> None:
    recorded = load_fixture(f"errors/0.33.0/{case}.json")
    async with make_env(catalogue=object_info_full) as env:
        caller = await env.caller()
        response = await caller.client.post("/api/prompt", json=recorded["request"]["body"])
    assert response.status_code == recorded["response"]["status"]
    assert _without_tracebacks(response.json()) == _without_tracebacks(recorded["response"]["body"])


async def test_catalogue_is_loaded_once_and_follows_the_live_set(
    make_env: MakeEnv, object_info_full: dict[str, Any]
) -> None:
    async with make_env(catalogue=object_info_full) as env:
        caller = await env.caller()
        for _ in range(3):
            assert (await caller.client.post("/api/prompt", json={"prompt": PROMPT})).status_code == 200
        assert env.state.catalogues.loads == 1
        probe = {
            "1": {"class_type": "ProbeOnly", "inputs": {}},
            "2": {"class_type": "SaveImage", "inputs": {}},
        }
        assert (await caller.client.post("/api/prompt", json={"prompt": probe})).status_code == 400
        # A new instance with a new catalogue: picked up by the next request.
        extra = {"ProbeOnly": {**object_info_full["SaveImage"], "input": {}, "output_node": True}}
        await register_catalogue(env.db, extra)
        response = await caller.client.post("/api/prompt", json={"prompt": {"1": probe["1"]}})
        assert response.status_code == 200, response.text
        assert env.state.catalogues.loads == 2


async def test_no_live_instance_means_missing_node_type(make_env: MakeEnv) -> None:
    async with make_env(catalogue={}) as env:
        caller = await env.caller()
        response = await caller.client.post("/api/prompt", json={"prompt": PROMPT})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "missing_node_type"
    assert error["extra_info"] == {"node_id": "1", "class_type": "EmptyImage", "node_title": "EmptyImage"}


async def test_lost_instances_do_not_count(make_env: MakeEnv, object_info_small: dict[str, Any]) -> None:
    async with make_env(catalogue={}) as env:
        await register_catalogue(env.db, object_info_small, status="lost")
        caller = await env.caller()
        response = await caller.client.post("/api/prompt", json={"prompt": PROMPT})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "missing_node_type"


async def test_classes_split_over_instances_are_not_runnable(
    make_env: MakeEnv, object_info_small: dict[str, Any]
) -> None:
    only_empty = {"EmptyImage": object_info_small["EmptyImage"]}
    only_save = {"SaveImage": object_info_small["SaveImage"]}
    async with make_env(catalogue=only_empty) as env:
        await register_catalogue(env.db, only_save)
        caller = await env.caller()
        response = await caller.client.post("/api/prompt", json={"prompt": PROMPT})
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "missing_node_type"
    assert response.json()["error"]["extra_info"]["class_type"] in {"EmptyImage", "SaveImage"}


def _load_image_prompt(name: str) -> dict[str, Any]:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("probe.png", ("probe.png", "input", "")),
        ("pasted/image.png", ("image.png", "input", "pasted")),
        ("deep/sub/dir/x.png", ("x.png", "input", "deep/sub/dir")),
        ("out_1234abcd.png [output]", ("out_1234abcd.png", "output", "")),
        ("up.png [input]", ("up.png", "input", "")),
    ],
)
async def test_file_inputs_exist_only_among_the_callers_files(
    env: Env, alice: Caller, bob: Caller, value: str, stored: tuple[str, str, str]
) -> None:
    filename, type_, subfolder = stored
    await add_file(env.db, alice.id, filename, type_=type_, subfolder=subfolder)
    mine = await alice.client.post("/api/prompt", json={"prompt": _load_image_prompt(value)})
    assert mine.status_code == 200, mine.text
    theirs = await bob.client.post("/api/prompt", json={"prompt": _load_image_prompt(value)})
    assert theirs.status_code == 400
    reason = theirs.json()["node_errors"]["1"]["errors"][0]
    assert reason["type"] == "custom_validation_failed"
    assert reason["details"] == f"image - Invalid image file: {value}"


@pytest.mark.parametrize("value", ["../probe.png", "/etc/passwd", "a//b.png", "probe.png [temp]"])
async def test_file_inputs_that_cannot_name_a_file(env: Env, alice: Caller, value: str) -> None:
    await add_file(env.db, alice.id, "probe.png")
    response = await alice.client.post("/api/prompt", json={"prompt": _load_image_prompt(value)})
    assert response.status_code == 400
    assert response.json()["node_errors"]["1"]["errors"][0]["type"] == "custom_validation_failed"


async def test_partner_credentials_are_sealed_and_never_shown(env: Env, alice: Caller) -> None:
    secret = {"api_key_comfy_org": "comfyui-very-secret", "auth_token_comfy_org": "tok-secret"}
    body = {"prompt": PROMPT, "extra_data": {**secret, "note": "kept"}}
    answer = (await alice.client.post("/api/prompt", json=body)).json()
    job_id = uuid.UUID(answer["prompt_id"])
    async with env.db.session() as session:
        job = await JobRepository(session).get(alice.id, job_id)
    assert job is not None and job.sealed_secrets is not None
    assert b"very-secret" not in job.sealed_secrets
    assert env.state.sealer is not None
    assert env.state.sealer.unseal(job_id, job.sealed_secrets) == secret
    assert job.extra_data["note"] == "kept" and "api_key_comfy_org" not in job.extra_data
    for path in (
        "/api/queue",
        "/api/jobs",
        f"/api/jobs/{job_id}",
        "/api/history",
        f"/api/job/{job_id}/status",
    ):
        text = (await alice.client.get(path)).text
        assert "secret" not in text, path


async def test_credentials_without_a_secret_key_are_refused(make_env: MakeEnv) -> None:
    async with make_env(secret_key=None) as env:
        caller = await env.caller()
        body = {"prompt": PROMPT, "extra_data": {"api_key_comfy_org": "comfyui-x"}}
        response = await caller.client.post("/api/prompt", json=body)
        assert response.status_code == 503
        assert response.json()["error"]["type"] == "server_error"
        assert (await caller.client.get("/api/prompt")).json()["exec_info"]["queue_remaining"] == 0


async def test_partial_execution_targets_and_partial_validity(env: Env, alice: Caller) -> None:
    prompt = {
        **PROMPT,
        "3": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "bad"}},
    }
    response = await alice.client.post("/api/prompt", json={"prompt": prompt})
    assert response.status_code == 200
    assert list(response.json()["node_errors"]) == ["3"]
    targeted = await alice.client.post(
        "/api/prompt", json={"prompt": prompt, "partial_execution_targets": ["2"]}
    )
    assert targeted.status_code == 200 and targeted.json()["node_errors"] == {}
    async with env.db.session() as session:
        job = await JobRepository(session).get(alice.id, uuid.UUID(targeted.json()["prompt_id"]))
    assert job is not None and job.outputs_to_execute == ["2"]


async def test_usage_source_header(env: Env, alice: Caller) -> None:
    response = await alice.client.post(
        "/api/prompt", json={"prompt": PROMPT}, headers={"Comfy-Usage-Source": "cli"}
    )
    async with env.db.session() as session:
        job = await JobRepository(session).get(alice.id, uuid.UUID(response.json()["prompt_id"]))
    assert job is not None and job.extra_data["comfy_usage_source"] == "cli"
