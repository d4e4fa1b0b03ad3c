"""ComfyUI's /history and Comfy Cloud's /api/history_v2, from our history rows."""

from __future__ import annotations

import uuid

from database.job_states import JobStatus
from services.ingest.jobs.schemas import HistoryResponse, HistoryV2DetailResponse, HistoryV2Response
from tests.ingest.core.conftest import Caller, Env, add_job, load_fixture
from tests.ingest.core.recorded import add_recorded_entry, recorded_history_entries


async def add_entries(env: Env, user: Caller) -> list[str]:
    entries = recorded_history_entries()
    for prompt_id, entry in entries.items():
        await add_recorded_entry(env.db, user.id, prompt_id, entry)
    return list(entries)


async def test_history_item_matches_the_recording(env: Env, alice: Caller) -> None:
    await add_entries(env, alice)
    recorded = load_fixture("http/history-entry-0.33.0.json")
    for prefix in ("", "/api"):
        response = await alice.client.get(prefix + recorded["request"]["path"].removeprefix("/api"))
        assert response.status_code == 200
        assert response.json() == recorded["response"]["body"]
        HistoryResponse.model_validate(response.json())


async def test_history_pages_match_the_recording(env: Env, alice: Caller) -> None:
    await add_entries(env, alice)
    for exchange in load_fixture("http/history-list-0.33.0.json")["exchanges"]:
        body = (await alice.client.get(exchange["request"]["path"])).json()
        assert body == exchange["response"]["body"]
        assert list(body) == list(exchange["response"]["body"])  # oldest first


async def test_history_lists_finished_jobs_oldest_first(env: Env, alice: Caller) -> None:
    ids = await add_entries(env, alice)
    await add_job(env.db, alice.id)  # pending and running jobs are not history yet
    running = await add_job(env.db, alice.id, JobStatus.IN_PROGRESS)
    body = (await alice.client.get("/history")).json()
    assert list(body) == ids
    assert (await alice.client.get(f"/api/history/{running}")).json() == {}
    assert (await alice.client.get("/api/history?offset=1")).json().keys() == set(ids[1:])
    assert list((await alice.client.get("/api/history?max_items=0")).json()) == []


async def test_unknown_history_item_is_empty(env: Env, alice: Caller) -> None:
    survey = {e["label"]: e for e in load_fixture("http/endpoint-survey-0.33.0.json")["exchanges"]}
    for label in ("GET /api/history/does-not-exist", "GET /api/history"):
        response = await alice.client.get(survey[label]["request"]["path"])
        assert response.status_code == 200 and response.json() == survey[label]["response"]["body"]


async def test_jobs_ended_without_running_have_an_error_entry(env: Env, alice: Caller) -> None:
    cancelled = await add_job(env.db, alice.id, JobStatus.CANCELLED)
    entry = (await alice.client.get(f"/api/history/{cancelled}")).json()[str(cancelled)]
    assert entry["outputs"] == {} and entry["meta"] == {}
    assert entry["status"] == {"status_str": "error", "completed": False, "messages": []}
    assert entry["prompt"][1] == str(cancelled) and len(entry["prompt"]) == 5


async def test_delete_and_clear_hide_finished_jobs(env: Env, alice: Caller, bob: Caller) -> None:
    ids = await add_entries(env, alice)
    pending = await add_job(env.db, alice.id)
    theirs = await add_job(env.db, bob.id, JobStatus.COMPLETED)
    response = await alice.client.post(
        "/api/history", json={"delete": [ids[0], str(theirs), str(pending), "junk"]}
    )
    assert response.status_code == 200 and response.content == b""
    assert list((await alice.client.get("/api/history")).json()) == ids[1:]
    assert (await alice.client.get(f"/api/history/{ids[0]}")).json() == {}
    assert (await alice.client.get(f"/api/jobs/{ids[0]}")).status_code == 404
    assert str(theirs) in (await bob.client.get("/api/history")).json()
    assert (await alice.client.post("/history", json={"clear": True})).status_code == 200
    assert (await alice.client.get("/api/history")).json() == {}
    assert [item[1] for item in (await alice.client.get("/api/queue")).json()["queue_pending"]] == [
        str(pending)
    ]
    assert str(theirs) in (await bob.client.get("/api/history")).json()


async def test_history_v2(env: Env, alice: Caller) -> None:
    ids = await add_entries(env, alice)
    entries = recorded_history_entries()
    body = (await alice.client.get("/api/history_v2")).json()
    HistoryV2Response.model_validate(body)
    assert [e["prompt_id"] for e in body["history"]] == list(reversed(ids))  # newest first
    first = next(e for e in body["history"] if e["prompt_id"] == ids[0])
    recorded = entries[ids[0]]
    assert first == {
        "prompt_id": ids[0],
        "create_time": 1795860230231,
        "workflow_id": "wf-123",
        "prompt": {
            "priority": 0,
            "prompt_id": ids[0],
            # The UI workflow is removed from extra_pnginfo in this lightweight form.
            "extra_data": {
                "extra_pnginfo": {},
                "client_id": "2e33bb47d765419cbd82582ec1d84aaa",
                "create_time": 1795860230231,
            },
        },
        "outputs": recorded["outputs"],
        "status": recorded["status"],
        "meta": recorded["meta"],
    }
    page = (await alice.client.get("/api/history_v2?max_items=1&offset=1")).json()
    assert [e["prompt_id"] for e in page["history"]] == [list(reversed(ids))[1]]
    detail = (await alice.client.get(f"/api/history_v2/{ids[0]}")).json()
    HistoryV2DetailResponse.model_validate(detail)
    number, prompt_id, prompt, extra_data, outputs_to_execute = recorded["prompt"]
    assert detail == {
        ids[0]: {
            "prompt": {
                "priority": number, "prompt_id": prompt_id, "prompt": prompt, "extra_data": extra_data,
                "outputs_to_execute": outputs_to_execute,
            },
            "outputs": recorded["outputs"],
            "status": recorded["status"],
            "meta": recorded["meta"],
        }
    }  # fmt: skip


async def test_history_v2_unknown_is_404_in_cloud_style(env: Env, alice: Caller) -> None:
    running = await add_job(env.db, alice.id, JobStatus.IN_PROGRESS)
    for job_id in (str(uuid.uuid4()), str(running), "nonsense"):
        response = await alice.client.get(f"/api/history_v2/{job_id}")
        assert response.status_code == 404
        assert response.json() == {"code": "not_found", "message": "History not found"}
