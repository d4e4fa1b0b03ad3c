"""Queue, history and jobs: shapes and semantics against tests/fixtures/comfyui/http/ and ws/queue-ops."""

from __future__ import annotations

import heapq
import json
import re
from typing import Any

import httpx

from comfy_cloud.simulator import SimulatorServer
from tests.simulator.support import (
    FRONTEND_FLAGS,
    Recorder,
    Start,
    cached_nodes,
    canon_sequence,
    client_for,
    drop_keys,
    fixture,
    is_type,
    png,
    queue_remaining,
    recorded,
    replace_ids,
    sleep_prompt,
    submit,
    upload,
)

TIMES = {"timestamp", "create_time", "execution_start_time", "execution_end_time"}
TEMP_NAME = re.compile(r"ComfyUI_temp_[a-z]{5}_")


def normalize(value: Any, ids: dict[str, str]) -> Any:
    """Our ids → the recording's, clocks dropped, random temp names masked, output lists sorted."""
    value = drop_keys(replace_ids(value, ids), TIMES)
    return json.loads(TEMP_NAME.sub("ComfyUI_temp_?????_", json.dumps(value)))


async def run_seven_node_graph(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> tuple[str, str, dict[str, Any]]:
    rec = fixture("ws/success-fresh-0.33.0.json")
    await upload(http, "probe.png", png(8, 8, (10, 200, 30)))
    async with Recorder(sim.ws_url, first=[FRONTEND_FLAGS]) as a:
        await a.wait_for(lambda f: is_type(f, "feature_flags"))
        body = rec["request"]["body"]
        prompt_id = await submit(http, body["prompt"], client_id=a.sid, extra_data=body["extra_data"])
        await a.wait_done(prompt_id)
    assert a.sid is not None
    return prompt_id, a.sid, rec


async def test_history_entry_and_job_detail_match_recordings(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    prompt_id, sid, rec = await run_seven_node_graph(sim, http)
    ids = {prompt_id: rec["response"]["body"]["prompt_id"], sid: rec["request"]["body"]["client_id"]}

    expected = fixture("http/history-entry-0.33.0.json")["response"]["body"]
    ours = (await http.get(f"/api/history/{prompt_id}")).json()
    ours_entry, expected_entry = next(iter(ours.values())), next(iter(expected.values()))
    assert list(ours_entry) == ["prompt", "outputs", "status", "meta"]
    assert list(ours_entry["prompt"][3]) == ["extra_pnginfo", "client_id", "create_time"]
    assert sorted(ours_entry["prompt"][4]) == sorted(expected_entry["prompt"][4])
    ours_entry["prompt"][4] = expected_entry["prompt"][4]
    assert normalize(ours, ids) == normalize(expected, {})

    detail = (await http.get(f"/api/jobs/{prompt_id}")).json()
    assert normalize(detail, ids) == normalize(
        fixture("http/jobs-detail-0.33.0.json")["response"]["body"], {}
    )
    assert detail["execution_start_time"] <= detail["execution_end_time"]
    assert detail["create_time"] == ours_entry["prompt"][3]["create_time"]

    # The saved PNG carries the API prompt and the UI workflow, as SaveImage writes them.
    view = await http.get("/api/view", params={"filename": "probe_00001_.png", "type": "output"})
    from io import BytesIO

    from PIL import Image

    chunks = Image.open(BytesIO(view.content)).text
    assert json.loads(chunks["prompt"]) == rec["request"]["body"]["prompt"]
    assert json.loads(chunks["workflow"]) == {"id": "wf-123", "nodes": []}


async def test_partial_execution_runs_only_the_target_branch(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    rec = fixture("ws/partial-execution-0.33.0.json")
    await upload(http, "probe.png", png(8, 8, (1, 2, 3)))
    async with Recorder(sim.ws_url) as a:
        body = rec["request"]["body"]
        prompt_id = await submit(http, body["prompt"], client_id=a.sid, partial_execution_targets=["5"])
        await a.wait_done(prompt_id)
    cached = cached_nodes(rec["messages"])
    assert canon_sequence(a.frames[1:], cached) == canon_sequence(recorded(rec["messages"], "A"), cached)
    entry = (await http.get(f"/api/history/{prompt_id}")).json()[prompt_id]
    assert entry["prompt"][4] == ["5"] and list(entry["outputs"]) == ["5"]


async def test_history_list_paging(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    ids = []
    async with Recorder(sim.ws_url) as a:
        for color in (1, 2, 3):
            prompt = fixture("workflows/basic_invert.json")
            prompt["1"]["inputs"]["color"] = color
            ids.append(await submit(http, prompt, client_id=a.sid))
            await a.wait_done(ids[-1])
    assert list((await http.get("/api/history")).json()) == ids
    assert list((await http.get("/api/history?max_items=2")).json()) == ids[1:]  # the last two, oldest first
    assert list((await http.get("/api/history?max_items=1&offset=0")).json()) == ids[:1]
    assert list((await http.get("/api/history?offset=1")).json()) == ids[1:]
    shape = fixture("http/history-list-0.33.0.json")["exchanges"][0]["response"]["body"]
    assert {tuple(e) for e in (await http.get("/api/history")).json().values()} == {
        tuple(e) for e in shape.values()
    }
    bad = await http.get("/api/history?max_items=x")
    assert bad.status_code == 500 and bad.headers["content-type"].startswith("text/plain")

    assert (await http.post("/api/history", json={"delete": [ids[0]]})).status_code == 200
    assert list((await http.get("/history")).json()) == ids[1:]
    assert (await http.post("/history", json={"clear": True})).content == b""
    assert (await http.get("/history")).json() == {}


async def test_client_prompt_id_and_number(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    rec = fixture("http/prompt-client-prompt-id-0.33.0.json")["exchanges"]
    async with Recorder(sim.ws_url) as a:
        first = await http.post("/api/prompt", json={**rec[0]["request"]["body"], "client_id": a.sid})
        assert '"number": 5.0' in first.text  # float(number), echoed as such
        assert first.json() == rec[0]["response"]["body"]
        await a.wait_done(first.json()["prompt_id"])
        mark = len(a.frames)
        again = await http.post("/api/prompt", json={**rec[1]["request"]["body"], "client_id": a.sid})
        assert again.status_code == 200 and again.json()["prompt_id"] == first.json()["prompt_id"]
        assert again.json()["number"] == 0  # an explicit number does not advance the counter
        await a.wait_done(again.json()["prompt_id"], start=mark)
    history = (await http.get("/api/history")).json()
    assert list(history) == [first.json()["prompt_id"]]  # the re-run replaced the entry in place
    assert history[first.json()["prompt_id"]]["prompt"][0] == 0
    assert history[first.json()["prompt_id"]]["prompt"][2]["2"]["inputs"]["seconds"] == 0.3


async def test_jobs_list_queries_and_errors(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    async with Recorder(sim.ws_url) as a:
        ids = []
        for n in range(4):
            prompt = fixture("workflows/basic_invert.json")
            prompt["1"]["inputs"]["color"] = n
            extra = {"extra_pnginfo": {"workflow": {"id": "wf-123"}}} if n == 1 else {}
            ids.append(await submit(http, prompt, client_id=a.sid, extra_data=extra))
            await a.wait_done(ids[-1])
    page = (await http.get("/api/jobs?limit=3")).json()
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:3]
    assert page["pagination"] == {"offset": 0, "limit": 3, "total": 4, "has_more": True}
    recorded_item = fixture("http/jobs-list-variants-0.33.0.json")["exchanges"][0]["response"]["body"][
        "jobs"
    ][0]
    assert list(page["jobs"][0]) == [k for k in recorded_item if k != "workflow_id"]
    by_workflow = (await http.get("/api/jobs?workflow_id=wf-123")).json()
    assert [j["id"] for j in by_workflow["jobs"]] == [ids[1]] and by_workflow["jobs"][0][
        "workflow_id"
    ] == "wf-123"
    assert by_workflow["pagination"]["limit"] is None
    assert (await http.get("/api/api/jobs?limit=1")).json()["pagination"]["total"] == 4
    for exchange in fixture("http/endpoint-survey-0.33.0.json")["exchanges"]:
        path = exchange["request"]["path"]
        if exchange["request"]["method"] == "GET" and path.startswith(("/api/jobs?", "/api/jobs/0000")):
            response = await http.get(path)
            assert (response.status_code, response.json()) == (
                exchange["response"]["status"],
                exchange["response"]["body"],
            )


async def test_queue_and_cancel_0_33(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    """GET /api/queue with running + pending (one front), delete, cancel pending and running jobs."""
    async with Recorder(sim.ws_url) as a:
        running = await submit(http, sleep_prompt(60, "q0"), client_id=a.sid)
        await a.wait_for(lambda f: is_type(f, "executing") and f["data"]["node"] == "2")
        pending = [await submit(http, sleep_prompt(0.1, f"q{n}"), client_id=a.sid) for n in (1, 2, 3)]
        front = await submit(http, sleep_prompt(0.1, "front"), client_id=a.sid, front=True)
        queue = (await http.get("/api/queue")).json()
        assert [item[1] for item in queue["queue_running"]] == [running]
        numbers = [1, 2, 3, -4]
        heap: list[int] = []
        for number in numbers:
            heapq.heappush(heap, number)
        assert [item[0] for item in queue["queue_pending"]] == heap  # heap order, not sorted
        item = queue["queue_pending"][0]
        assert item[1] == front and item[4] == ["3"] and list(item[3]) == ["client_id", "create_time"]
        assert (await http.get("/api/prompt")).json() == {"exec_info": {"queue_remaining": 5}}

        jobs = (await http.get("/api/jobs?status=in_progress,pending&limit=200&offset=0")).json()["jobs"]
        assert [(j["id"], j["status"]) for j in jobs] == [
            (front, "pending"),
            (pending[2], "pending"),
            (pending[1], "pending"),
            (pending[0], "pending"),
            (running, "in_progress"),
        ]
        shape = fixture("http/jobs-list-pending-0.33.0.json")["response"]["body"]["jobs"][0]
        assert all(list(j) == list(shape) for j in jobs)

        assert (await http.post("/api/queue", json={"delete": [pending[1]]})).content == b""
        assert (await http.post(f"/api/jobs/{pending[2]}/cancel")).json() == {"cancelled": True}
        assert (await http.post(f"/api/jobs/{running}/cancel")).json() == {"cancelled": True}
        await a.wait_done(running)
        await a.wait_done(front)
        await a.wait_done(pending[0])
    history = (await http.get("/api/history")).json()
    assert list(history) == [running, front, pending[0]]  # deleted/cancelled pending ones never ran
    statuses = {j["id"]: j["status"] for j in (await http.get("/api/jobs")).json()["jobs"]}
    assert statuses == {running: "cancelled", front: "completed", pending[0]: "completed"}
    assert (await http.post(f"/api/jobs/{running}/cancel")).json() == {"cancelled": False}  # finished
    assert (await http.get(f"/api/history/{pending[1]}")).json() == {}
    bad = [
        (b"{", {"error": "Request body must be valid JSON"}),
        (b'{"job_ids": "x"}', {"error": "job_ids must be a list"}),
        (b'{"job_ids": ["bad"]}', {"error": "job_ids contains invalid id(s)", "invalid_ids": ["bad"]}),
    ]
    for body, error in bad:
        response = await http.post("/api/jobs/cancel", content=body)
        assert (response.status_code, response.json()) == (400, error)
    ok = await http.post("/api/jobs/cancel", json={"job_ids": ["00000000-0000-4000-8000-000000000000"]})
    assert ok.json() == {"cancelled": False}


async def test_queue_ops_0_3_64(start_sim: Start) -> None:
    """ws/queue-ops-0.3.64.json: status on every queue change, front numbers, delete/clear, idle interrupt."""
    rec = fixture("ws/queue-ops-0.3.64.json")
    server = await start_sim(version="0.3.64")
    basic = rec["http"][1]["request"]["body"]
    async with client_for(server) as http, Recorder(server.ws_url) as a:
        first = await submit(http, sleep_prompt(60), client_id=a.sid)
        await a.wait_for(lambda f: is_type(f, "executing") and f["data"]["node"] == "2")
        second = await submit(http, basic["prompt"], client_id=a.sid, extra_data={"note": "pending-1"})
        third = await submit(http, rec["http"][2]["request"]["body"]["prompt"], client_id=a.sid, front=True)
        queue = (await http.get("/queue")).json()
        assert queue["queue_running"][0][:2] == [0, first] and queue["queue_running"][0][3] == {
            "client_id": a.sid
        }
        assert queue["queue_pending"] == [
            [-2, third, rec["http"][2]["request"]["body"]["prompt"], {"client_id": a.sid}, ["3"]],
            [1, second, basic["prompt"], {"note": "pending-1", "client_id": a.sid}, ["3"]],
        ]
        await http.post("/queue", json={"delete": [second]})
        assert [i[1] for i in (await http.get("/queue")).json()["queue_pending"]] == [third]
        await http.post("/queue", json={"clear": True})
        assert (await http.get("/queue")).json()["queue_pending"] == []
        assert (await http.post("/interrupt", json={"prompt_id": first})).content == b""
        await a.wait_done(first)
        assert (await http.get("/queue")).json() == {"queue_running": [], "queue_pending": []}
        assert (await http.post("/interrupt")).status_code == 200  # idle: still 200
        assert (await http.get(f"/history/{second}")).json() == {}
    statuses = [queue_remaining(f) for f in a.frames if is_type(f, "status")]
    assert statuses == [
        queue_remaining(m["message"]) for m in rec["messages"] if m["message"]["type"] == "status"
    ]


async def test_deleting_the_last_pending_prompt_notifies_twice(
    sim: SimulatorServer, http: httpx.AsyncClient
) -> None:
    async with Recorder(sim.ws_url) as a:
        running = await submit(http, sleep_prompt(60), client_id=a.sid)
        await a.wait_for(lambda f: is_type(f, "executing") and f["data"]["node"] == "2")
        lone = await submit(http, sleep_prompt(0.1), client_id=a.sid)
        await a.wait_status(2)
        mark = len(a.frames)
        await http.post("/api/queue", json={"delete": [lone]})
        await a.wait_status(1, start=mark)
        await http.post("/api/interrupt", json={"prompt_id": running})
        await a.wait_done(running)
    statuses = [queue_remaining(f) for f in a.frames[mark:] if is_type(f, "status")]
    assert statuses == [1, 1, 0]  # ComfyUI wipes the queue and notifies, then notifies the delete


async def test_jobs_api_absent_on_0_3_64(legacy: SimulatorServer) -> None:
    async with client_for(legacy) as http:
        response = await http.get("/api/jobs")
        assert response.status_code == 404 and response.content == b""
        assert (await http.post("/api/jobs/cancel", json={"job_ids": []})).status_code == 404


async def test_extra_data_is_stored_without_secrets(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    async with Recorder(sim.ws_url) as a:
        extra = {"note": "n", "api_key_comfy_org": "secret", "auth_token_comfy_org": "secret"}
        response = await http.post(
            "/api/prompt",
            json={"prompt": fixture("workflows/basic_invert.json"), "client_id": a.sid, "extra_data": extra},
            headers={"Comfy-Usage-Source": "sdk"},
        )
        await a.wait_done(response.json()["prompt_id"])
    entry = next(iter((await http.get("/api/history")).json().values()))
    assert list(entry["prompt"][3]) == ["note", "client_id", "comfy_usage_source", "create_time"]
    assert "secret" not in json.dumps(entry) and entry["prompt"][3]["comfy_usage_source"] == "sdk"


async def test_prompt_id_is_not_checked_on_0_3_64(legacy: SimulatorServer) -> None:
    async with client_for(legacy) as http, Recorder(legacy.ws_url) as a:
        body = {
            "prompt": fixture("workflows/basic_invert.json"),
            "client_id": a.sid,
            "prompt_id": "NOT-A-UUID",
        }
        response = await http.post("/prompt", json=body)
        assert response.status_code == 200 and response.json()["prompt_id"] == "NOT-A-UUID"
        await a.wait_done("NOT-A-UUID")
        assert list((await http.get("/history")).json()) == ["NOT-A-UUID"]
