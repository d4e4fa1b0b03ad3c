"""Every route that takes an id, tried by one user with another user's ids: the answers must be exactly
those for ids that do not exist, and nothing of the other user may change."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from database.job_states import JobStatus
from database.repositories.jobs import JobFilter, JobRepository
from tests.ingest.core.conftest import PROMPT, Caller, Env, add_job
from tests.ingest.core.recorded import add_recorded_entry, recorded_history_entries

GETS = [
    "/api/jobs/{id}",
    "/api/job/{id}/status",
    "/history/{id}",
    "/api/history/{id}",
    "/api/history_v2/{id}",
]
POSTS: list[tuple[str, Any]] = [
    ("/api/jobs/{id}/cancel", None),
    ("/api/jobs/cancel", {"job_ids": ["{id}"]}),
    ("/queue", {"delete": ["{id}"]}),
    ("/api/queue", {"delete": ["{id}"]}),
    ("/history", {"delete": ["{id}"]}),
    ("/api/history", {"delete": ["{id}"]}),
    ("/interrupt", {"prompt_id": "{id}"}),
    ("/api/interrupt", {"prompt_id": "{id}"}),
]


def _fill(template: Any, job_id: str) -> Any:
    if isinstance(template, str):
        return template.replace("{id}", job_id)
    if isinstance(template, list):
        return [_fill(v, job_id) for v in template]
    if isinstance(template, dict):
        return {k: _fill(v, job_id) for k, v in template.items()}
    return template


def _shape(response: Any, job_id: str, placeholder: str = "<id>") -> tuple[int, str, str]:
    """Status, content type and body with the id itself replaced (answers may echo the id asked for)."""
    return (
        response.status_code,
        response.headers.get("content-type", ""),
        response.text.replace(job_id, placeholder),
    )


@pytest.fixture
async def bobs_jobs(env: Env, bob: Caller) -> dict[str, str]:
    """One job of bob in every state, finished ones with history entries."""
    jobs = {status.value: str(await add_job(env.db, bob.id, status)) for status in JobStatus}
    (prompt_id, entry), *_ = recorded_history_entries().items()
    jobs["recorded"] = str(await add_recorded_entry(env.db, bob.id, prompt_id, entry))
    return jobs


async def _snapshot(env: Env, bob: Caller) -> dict[str, Any]:
    async with env.db.session() as session:
        rows, _ = await JobRepository(session).list(bob.id, JobFilter())
    return {str(r.job.id): (r.job.status, r.job.deleted_at, r.job.updated_at) for r in rows}


async def test_foreign_ids_look_unknown(
    env: Env, alice: Caller, bob: Caller, bobs_jobs: dict[str, str]
) -> None:
    before = await _snapshot(env, bob)
    await add_job(env.db, alice.id, JobStatus.IN_PROGRESS)  # alice has work of her own too
    for label, foreign in bobs_jobs.items():
        unknown = str(uuid.uuid4())
        for template in GETS:
            theirs = await alice.client.get(template.format(id=foreign))
            missing = await alice.client.get(template.format(id=unknown))
            assert _shape(theirs, foreign) == _shape(missing, unknown), (label, template)
        for template, body in POSTS:
            path = template.format(id=foreign)
            theirs = await alice.client.post(path, json=_fill(body, foreign))
            missing = await alice.client.post(template.format(id=unknown), json=_fill(body, unknown))
            assert _shape(theirs, foreign) == _shape(missing, unknown), (label, template)
    assert env.dispatcher.cancels == []
    assert await _snapshot(env, bob) == before


async def test_foreign_prompt_id_answers_like_a_repeat(
    env: Env, alice: Caller, bob: Caller, bobs_jobs: dict[str, str]
) -> None:
    mine = (await alice.client.post("/api/prompt", json={"prompt": PROMPT})).json()["prompt_id"]
    repeat = await alice.client.post("/api/prompt", json={"prompt": PROMPT, "prompt_id": mine})
    for foreign in bobs_jobs.values():
        theirs = await alice.client.post("/api/prompt", json={"prompt": PROMPT, "prompt_id": foreign})
        assert _shape(theirs, foreign) == _shape(repeat, mine)


async def test_lists_never_show_foreign_jobs(
    env: Env, alice: Caller, bob: Caller, bobs_jobs: dict[str, str]
) -> None:
    for path in (
        "/api/jobs",
        "/api/jobs?workflow_id=wf-123",
        "/history",
        "/api/history_v2",
        "/api/queue",
        "/api/prompt",
    ):
        text = (await alice.client.get(path)).text
        assert not any(job_id in text for job_id in bobs_jobs.values()), path
    assert (await alice.client.get("/api/jobs")).json()["pagination"]["total"] == 0
    assert (await alice.client.get("/api/prompt")).json() == {"exec_info": {"queue_remaining": 0}}
    assert (await bob.client.get("/api/jobs")).json()["pagination"]["total"] == len(bobs_jobs)
