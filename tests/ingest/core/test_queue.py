"""GET/POST /queue and POST /interrupt: the caller's queue in ComfyUI's shapes."""

from __future__ import annotations

import uuid
from typing import Any

from database.job_states import JobStatus
from database.repositories.jobs import JobRepository
from tests.ingest.core.conftest import PROMPT, Caller, Env, add_job, load_fixture


async def _status(env: Env, user: Caller, job_id: uuid.UUID) -> str:
    async with env.db.session() as session:
        job = await JobRepository(session).get(user.id, job_id, include_deleted=True)
    assert job is not None
    return job.status


def _recorded_queue() -> dict[str, Any]:
    return load_fixture("http/queue-0.33.0.json")["exchanges"][0]["response"]["body"]


async def test_queue_items_match_the_recording(env: Env, alice: Caller) -> None:
    recorded = _recorded_queue()
    for status, items in (
        (JobStatus.IN_PROGRESS, recorded["queue_running"]),
        (JobStatus.PENDING, recorded["queue_pending"]),
    ):
        for number, prompt_id, prompt, extra_data, outputs in items:
            await add_job(
                env.db, alice.id, status, job_id=prompt_id, prompt=prompt, extra_data=extra_data,
                number=number, outputs_to_execute=outputs,
            )  # fmt: skip
    for path in ("/api/queue", "/queue"):
        body = (await alice.client.get(path)).json()
        assert body["queue_running"] == recorded["queue_running"]
        # ComfyUI lists pending in heap order; we list them in the order they will run.
        assert sorted(body["queue_pending"], key=lambda i: i[0]) == sorted(
            recorded["queue_pending"], key=lambda i: i[0]
        )
        assert [item[0] for item in body["queue_pending"]] == sorted(
            item[0] for item in recorded["queue_pending"]
        )
    assert (await alice.client.get("/api/prompt")).json() == load_fixture("http/queue-0.33.0.json")[
        "exchanges"
    ][1]["response"]["body"]


async def test_queue_shows_only_the_callers_jobs_and_no_secrets(env: Env, alice: Caller, bob: Caller) -> None:
    body = {"prompt": PROMPT, "extra_data": {"api_key_comfy_org": "comfyui-secret"}}
    mine = (await alice.client.post("/api/prompt", json=body)).json()["prompt_id"]
    await bob.client.post("/api/prompt", json={"prompt": PROMPT})
    queue = (await alice.client.get("/api/queue")).json()
    assert [item[1] for item in queue["queue_pending"]] == [mine]
    assert "secret" not in str(queue)
    assert set(queue) == {"queue_running", "queue_pending"}
    item = queue["queue_pending"][0]
    assert len(item) == 5 and isinstance(item[0], int) and item[4] == ["2"]
    assert set(item[3]) == {"create_time"}


async def test_running_states_are_listed_as_running(env: Env, alice: Caller) -> None:
    ids = {status: await add_job(env.db, alice.id, status) for status in JobStatus}
    queue = (await alice.client.get("/api/queue")).json()
    running = {item[1] for item in queue["queue_running"]}
    pending = {item[1] for item in queue["queue_pending"]}
    assert running == {str(ids[s]) for s in (JobStatus.ASSIGNED, JobStatus.IN_PROGRESS, JobStatus.CANCELLING)}
    assert pending == {str(ids[JobStatus.PENDING])}


async def test_delete_cancels_only_the_callers_pending_jobs(env: Env, alice: Caller, bob: Caller) -> None:
    subscription = env.broadcaster.subscribe()
    pending = await add_job(env.db, alice.id)
    kept = await add_job(env.db, alice.id)
    running = await add_job(env.db, alice.id, JobStatus.IN_PROGRESS)
    foreign = await add_job(env.db, bob.id)
    body = {"delete": [str(pending), str(running), str(foreign), "not-an-id", 5]}
    response = await alice.client.post("/api/queue", json=body)
    assert response.status_code == 200 and response.content == b""
    assert await _status(env, alice, pending) == "cancelled"
    assert await _status(env, alice, kept) == "pending"
    assert await _status(env, alice, running) == "in_progress"  # POST /queue never interrupts
    assert await _status(env, bob, foreign) == "pending"
    event = await anext(subscription)
    assert (event.job_id, event.data, event.user_id) == (str(pending), {"status": "cancelled"}, str(alice.id))


async def test_clear_cancels_all_pending_of_the_caller(env: Env, alice: Caller, bob: Caller) -> None:
    mine = [await add_job(env.db, alice.id) for _ in range(3)]
    running = await add_job(env.db, alice.id, JobStatus.ASSIGNED)
    foreign = await add_job(env.db, bob.id)
    assert (await alice.client.post("/queue", json={"clear": True})).status_code == 200
    assert [await _status(env, alice, j) for j in mine] == ["cancelled"] * 3
    assert await _status(env, alice, running) == "assigned"
    assert await _status(env, bob, foreign) == "pending"
    assert (await alice.client.get("/api/queue")).json()["queue_pending"] == []


async def test_interrupt_without_prompt_id_cancels_all_running_jobs_of_the_caller(
    env: Env, alice: Caller, bob: Caller
) -> None:
    first = await add_job(env.db, alice.id, JobStatus.IN_PROGRESS)
    second = await add_job(env.db, alice.id, JobStatus.ASSIGNED)
    pending = await add_job(env.db, alice.id)
    foreign = await add_job(env.db, bob.id, JobStatus.IN_PROGRESS)
    response = await alice.client.post("/api/interrupt")
    assert response.status_code == 200 and response.content == b""
    assert set(env.dispatcher.cancels) == {first, second}
    assert await _status(env, alice, first) == "cancelling"
    assert await _status(env, alice, pending) == "pending"
    assert await _status(env, bob, foreign) == "in_progress"


async def test_interrupt_with_prompt_id(env: Env, alice: Caller, bob: Caller) -> None:
    first = await add_job(env.db, alice.id, JobStatus.IN_PROGRESS)
    second = await add_job(env.db, alice.id, JobStatus.IN_PROGRESS)
    foreign = await add_job(env.db, bob.id, JobStatus.IN_PROGRESS)
    assert (await alice.client.post("/interrupt", json={"prompt_id": str(second)})).status_code == 200
    assert env.dispatcher.cancels == [second]
    # A job that is not the caller's running job: a no-op, as on ComfyUI.
    for other in (str(foreign), str(uuid.uuid4()), "nonsense"):
        assert (await alice.client.post("/api/interrupt", json={"prompt_id": other})).status_code == 200
    assert env.dispatcher.cancels == [second]
    assert await _status(env, alice, first) == "in_progress"
    assert await _status(env, bob, foreign) == "in_progress"


async def test_interrupt_when_the_dispatcher_is_down(env: Env, alice: Caller) -> None:
    await add_job(env.db, alice.id, JobStatus.IN_PROGRESS)
    env.dispatcher.fail = True
    response = await alice.client.post("/api/interrupt")
    assert response.status_code == 503
    assert response.json() == {"error": "The dispatcher did not answer; try again"}
