"""The jobs API (/api/jobs, /api/jobs/{id}, the cancel routes) and Cloud's /api/job/{id}/status,
compared key by key with ComfyUI's recordings."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import pytest

from database.job_states import JobStatus
from database.repositories.jobs import JobFilter, JobRepository
from services.ingest.jobs.schemas import JobDetail, JobsListResponse, JobStatusResponse
from tests.ingest.core.conftest import PROMPT, Caller, Env, add_job, load_fixture
from tests.ingest.core.recorded import (
    add_recorded_entry,
    add_recorded_item,
    recorded_history_entries,
    recorded_job_items,
)

ITEMS_WITHOUT_ENTRY = [
    "2993766d-d7eb-4b1d-9094-83c5d7296d46",  # completed, output image
    "78be6c25-81b8-4131-bbd7-609cbfc29bf1",  # failed, with execution_error
    "5a4ea010-3253-40b0-bf11-7d05a77f45c4",  # cancelled while running
]


async def add_recorded_jobs(env: Env, user: Caller) -> list[str]:
    """The recorded finished jobs, inserted in creation order; returns their ids."""
    items = recorded_job_items()
    entries = recorded_history_entries()
    chosen = sorted([*entries, *ITEMS_WITHOUT_ENTRY], key=lambda i: items[i]["create_time"])
    for job_id in chosen:
        if job_id in entries:
            await add_recorded_entry(env.db, user.id, job_id, entries[job_id])
        else:
            await add_recorded_item(env.db, user.id, items[job_id])
    return chosen


async def test_list_matches_recorded_items(env: Env, alice: Caller) -> None:
    ids = await add_recorded_jobs(env, alice)
    items = recorded_job_items()
    response = await alice.client.get("/api/jobs?status=completed,failed,cancelled&limit=200&offset=0")
    body = response.json()
    JobsListResponse.model_validate(body)
    assert body["jobs"] == [items[i] for i in reversed(ids)]  # create_time desc
    assert body["pagination"] == {"offset": 0, "limit": 200, "total": len(ids), "has_more": False}


async def test_detail_matches_the_recording(env: Env, alice: Caller) -> None:
    await add_recorded_jobs(env, alice)
    recorded = load_fixture("http/jobs-detail-0.33.0.json")
    response = await alice.client.get(recorded["request"]["path"])
    assert response.status_code == 200
    body = response.json()
    JobDetail.model_validate(body)
    update_time = body.pop("update_time")
    assert isinstance(update_time, int) and update_time >= body["execution_end_time"] - 10**9
    assert body == recorded["response"]["body"]


async def test_pending_list_matches_the_recording(env: Env, alice: Caller) -> None:
    recorded = load_fixture("http/jobs-list-pending-0.33.0.json")
    items = list(reversed(recorded["response"]["body"]["jobs"]))  # oldest first
    for item in items:
        status = JobStatus.IN_PROGRESS if item["status"] == "in_progress" else JobStatus.PENDING
        await add_job(
            env.db,
            alice.id,
            status,
            job_id=item["id"],
            number=item["priority"],
            extra_data={"create_time": item["create_time"]},
        )
    response = await alice.client.get(recorded["request"]["path"])
    assert response.json() == recorded["response"]["body"]


async def test_list_variants(env: Env, alice: Caller) -> None:
    ids = await add_recorded_jobs(env, alice)
    first = (await alice.client.get("/api/jobs?limit=3")).json()
    assert [job["id"] for job in first["jobs"]] == list(reversed(ids))[:3]
    assert first["pagination"] == {"offset": 0, "limit": 3, "total": len(ids), "has_more": True}
    second = (await alice.client.get("/api/jobs?limit=3&offset=3")).json()
    assert [job["id"] for job in second["jobs"]] == list(reversed(ids))[3:6]
    assert second["pagination"]["has_more"] is False
    workflow = (await alice.client.get("/api/jobs?workflow_id=wf-123")).json()
    recorded = load_fixture("http/jobs-list-variants-0.33.0.json")["exchanges"][1]["response"]["body"]
    assert workflow["jobs"] == recorded["jobs"]
    # Unlike ComfyUI (null), limit is always a number: the frontend's schema requires one.
    assert workflow["pagination"] == {**recorded["pagination"], "limit": 100}
    oldest = (await alice.client.get("/api/jobs?sort_order=asc&limit=1")).json()
    assert [job["id"] for job in oldest["jobs"]] == ids[:1]
    failed = (await alice.client.get("/api/jobs?status=failed")).json()
    assert [job["id"] for job in failed["jobs"]] == ["78be6c25-81b8-4131-bbd7-609cbfc29bf1"]
    none = (await alice.client.get("/api/jobs?status=,")).json()
    assert none["jobs"] == [] and none["pagination"]["total"] == 0
    images = (await alice.client.get("/api/jobs?output_type=image")).json()
    assert images["pagination"]["total"] == 0  # output_types are written by the worker (none here)


async def test_sort_by_execution_duration(env: Env, alice: Caller) -> None:
    for _ in range(3):
        await add_job(env.db, alice.id, JobStatus.COMPLETED)
    async with env.db.session() as session:
        rows, _ = await JobRepository(session).list(alice.id, JobFilter())
    durations = {str(r.job.id): r.job.finished_at - r.job.started_at for r in rows}
    for spelling in ("execution_duration", "execution_time"):
        body = (await alice.client.get(f"/api/jobs?sort_by={spelling}&sort_order=asc")).json()
        got = [durations[job["id"]] for job in body["jobs"]]
        assert got == sorted(got)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "status=bogus",
            "Invalid status value(s): bogus. Valid values: "
            "pending, in_progress, completed, failed, cancelled",
        ),
        ("limit=0", "limit must be a positive integer"),
        ("limit=x", "limit must be an integer"),
        ("offset=x", "offset must be an integer"),
        ("sort_by=foo", "sort_by must be 'created_at' or 'execution_duration'"),
        ("sort_order=up", "sort_order must be 'asc' or 'desc'"),
    ],
)
async def test_query_errors_use_comfyuis_strings(env: Env, alice: Caller, query: str, message: str) -> None:
    response = await alice.client.get(f"/api/jobs?{query}")
    assert response.status_code == 400
    assert response.json() == {"error": message}


async def test_statuses_follow_the_api_mapping(env: Env, alice: Caller) -> None:
    expected = {
        JobStatus.PENDING: "pending", JobStatus.ASSIGNED: "pending", JobStatus.IN_PROGRESS: "in_progress",
        JobStatus.CANCELLING: "in_progress", JobStatus.COMPLETED: "completed", JobStatus.ERROR: "failed",
        JobStatus.TIMEOUT: "failed", JobStatus.CANCELLED: "cancelled",
    }  # fmt: skip
    ids = {await add_job(env.db, alice.id, status): name for status, name in expected.items()}
    body = (await alice.client.get("/api/jobs")).json()
    assert {uuid.UUID(job["id"]): job["status"] for job in body["jobs"]} == ids
    for job in body["jobs"]:
        assert isinstance(job["create_time"], int)
        assert None not in job.values()
    in_progress = (await alice.client.get("/api/jobs?status=in_progress")).json()["jobs"]
    assert {job["id"] for job in in_progress} == {str(i) for i, n in ids.items() if n == "in_progress"}


async def test_job_without_history_row(env: Env, alice: Caller) -> None:
    timed_out = await add_job(env.db, alice.id, JobStatus.TIMEOUT, error={"message": "queue deadline passed"})
    detail = (await alice.client.get(f"/api/jobs/{timed_out}")).json()
    assert detail["status"] == "failed"
    assert detail["outputs"] == {} and detail["outputs_count"] == 0
    assert detail["execution_status"] == {"status_str": "error", "completed": False, "messages": []}
    assert "execution_error" not in detail


async def test_detail_of_a_pending_job(env: Env, alice: Caller) -> None:
    extra = {"create_time": 1795860238007, "extra_pnginfo": {"workflow": {"id": "wf-9"}}, "client_id": "c"}
    job_id = await add_job(env.db, alice.id, extra_data=extra, number=3)
    detail = (await alice.client.get(f"/api/jobs/{job_id}")).json()
    JobDetail.model_validate(detail)
    update_time = detail.pop("update_time")
    assert isinstance(update_time, int)
    workflow = detail.pop("workflow")
    assert workflow == {"prompt": PROMPT, "extra_data": extra}
    assert detail == {
        "id": str(job_id), "status": "pending", "priority": 3, "create_time": 1795860238007,
        "outputs_count": 0, "previewable_outputs_count": 0, "workflow_id": "wf-9",
    }  # fmt: skip


async def test_unknown_job_is_404(env: Env, alice: Caller) -> None:
    recorded = next(
        e for e in load_fixture("http/endpoint-survey-0.33.0.json")["exchanges"]
        if e["label"] == "GET /api/jobs/00000000-0000-4000-8000-000000000000"
    )  # fmt: skip
    response = await alice.client.get(recorded["request"]["path"])
    assert response.status_code == 404 and response.json() == recorded["response"]["body"]


async def _status_of(env: Env, job_id: uuid.UUID) -> str:
    async with env.db.session() as session:
        job = await JobRepository(session).get_unscoped(job_id)
    assert job is not None
    return job.status


async def test_cancel_one(env: Env, alice: Caller) -> None:
    subscription = env.broadcaster.subscribe()
    pending = await add_job(env.db, alice.id)
    running = await add_job(env.db, alice.id, JobStatus.IN_PROGRESS)
    done = await add_job(env.db, alice.id, JobStatus.COMPLETED)
    assert (await alice.client.post(f"/api/jobs/{pending}/cancel")).json() == {"cancelled": True}
    assert await _status_of(env, pending) == "cancelled"
    assert (await anext(subscription)).data == {"status": "cancelled"}
    assert (await alice.client.post(f"/api/jobs/{running}/cancel")).json() == {"cancelled": True}
    assert env.dispatcher.cancels == [running]
    assert await _status_of(env, running) == "cancelling"
    assert (await alice.client.post(f"/api/jobs/{running}/cancel")).json() == {
        "cancelled": True
    }  # idempotent
    assert (await alice.client.post(f"/api/jobs/{done}/cancel")).json() == {"cancelled": False}
    assert (await alice.client.post(f"/api/jobs/{uuid.uuid4()}/cancel")).json() == {"cancelled": False}
    assert (await alice.client.post(f"/api/jobs/{pending}/cancel")).json() == {"cancelled": False}


async def test_cancel_many(env: Env, alice: Caller) -> None:
    survey = {e["label"]: e for e in load_fixture("http/endpoint-survey-0.33.0.json")["exchanges"]}
    cases = [
        (b"{bad", "POST /api/jobs/cancel bad json"),
        (b'{"job_ids": "abc"}', "POST /api/jobs/cancel not list"),
        (b'{"job_ids": ["bad"]}', "POST /api/jobs/cancel invalid id"),
        (b'{"job_ids": []}', "POST /api/jobs/cancel"),
    ]
    for raw, label in cases:
        response = await alice.client.post("/api/jobs/cancel", content=raw)
        assert response.status_code == survey[label]["response"]["status"], label
        assert response.json() == survey[label]["response"]["body"], label
    upper = str(uuid.uuid4()).upper()
    response = await alice.client.post("/api/jobs/cancel", json={"job_ids": [upper, 7]})
    assert response.json() == {"error": "job_ids contains invalid id(s)", "invalid_ids": [upper, 7]}
    pending = await add_job(env.db, alice.id)
    done = await add_job(env.db, alice.id, JobStatus.COMPLETED)
    response = await alice.client.post("/api/jobs/cancel", json={"job_ids": [str(done), str(pending)]})
    assert response.json() == {"cancelled": True}
    assert await _status_of(env, pending) == "cancelled"
    response = await alice.client.post("/api/jobs/cancel", json={"job_ids": [str(done)]})
    assert response.json() == {"cancelled": False}


async def test_cloud_job_status(env: Env, alice: Caller) -> None:
    raw = {
        JobStatus.PENDING: "queued_waiting",
        JobStatus.ASSIGNED: "allocated",
        JobStatus.IN_PROGRESS: "executing",
        JobStatus.CANCELLING: "cancel_requested",
        JobStatus.COMPLETED: "success",
        JobStatus.ERROR: "error",
        JobStatus.TIMEOUT: "error",
        JobStatus.CANCELLED: "cancelled",
    }
    for status, name in raw.items():
        job_id = await add_job(
            env.db, alice.id, status, error={"message": "boom"} if status is JobStatus.ERROR else None
        )
        response = await alice.client.get(f"/api/job/{job_id}/status")
        assert response.status_code == 200
        body = response.json()
        JobStatusResponse.model_validate(body)
        assert body["id"] == str(job_id) and body["status"] == name
        for key in ("created_at", "updated_at", "last_state_update"):
            assert datetime.fromisoformat(body[key]).tzinfo is not None
        if status is JobStatus.ERROR:
            assert json.loads(body["error_message"]) == {"message": "boom"}
        else:
            assert "error_message" not in body or status is JobStatus.TIMEOUT
    response = await alice.client.get(f"/api/job/{uuid.uuid4()}/status")
    assert response.status_code == 404
    assert response.json() == {"code": "not_found", "message": "Job not found"}


async def test_failed_job_status_carries_the_execution_error(env: Env, alice: Caller) -> None:
    await add_recorded_jobs(env, alice)
    body = (await alice.client.get("/api/job/78be6c25-81b8-4131-bbd7-609cbfc29bf1/status")).json()
    assert body["status"] == "error"
    assert (
        json.loads(body["error_message"])
        == recorded_job_items()["78be6c25-81b8-4131-bbd7-609cbfc29bf1"]["execution_error"]
    )


async def test_get_routes_answer_head(env: Env, alice: Caller) -> None:
    for path in ("/api/jobs", "/api/prompt", "/queue", "/api/history", "/api/history_v2"):
        response = await alice.client.head(path)
        assert response.status_code == 200, path
