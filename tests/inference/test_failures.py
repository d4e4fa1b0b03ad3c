"""Jobs that do not succeed: runtime errors, interrupts (cancel, timeout), missing inputs, rejections."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from comfy_cloud.broadcast.events import JOB_STATUS
from database.job_states import JobStatus, transition
from database.repositories.results import ResultRepository
from tests.inference.conftest import Harness, MakeHarness, basic_prompt, sleep_prompt


def failing_prompt() -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ProbeFail", "inputs": {"image": ["1", 0], "message": "boom"}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "never"}},
    }


async def history_of(harness: Harness, job_id: uuid.UUID) -> Any:
    async with harness.db.session() as session:
        return await ResultRepository(session).history_of(job_id)


def assert_closing(harness: Harness, job_id: uuid.UUID, terminal: str, status: str) -> None:
    events = harness.events_of(job_id)
    assert [e.type for e in events[-3:]] == [terminal, "executing", JOB_STATUS]
    assert events[-2].data == {"node": None, "prompt_id": str(job_id)}
    assert events[-1].data == {"status": status}


@pytest.mark.parametrize("version", ["0.33.0", "0.3.64"])
async def test_runtime_error_records_node_and_exception(make_harness: MakeHarness, version: str) -> None:
    harness = await make_harness(version)
    job_id = await harness.run(failing_prompt())
    job = await harness.wait_status(job_id)
    await harness.wait_idle()
    assert job.status == JobStatus.ERROR
    assert job.error["type"] == "execution_error"
    assert job.error["node_id"] == "2" and job.error["node_type"] == "ProbeFail"
    assert job.error["exception_type"] == "RuntimeError" and job.error["message"] == "boom"
    assert job.sealed_secrets is None and job.finished_at is not None
    history = await history_of(harness, job_id)
    assert history.status["status_str"] == "error" and history.status["completed"] is False
    last = history.status["messages"][-1]
    assert last[0] == "execution_error" and last[1]["exception_message"].strip() == "boom"
    assert history.outputs == {}
    assert_closing(harness, job_id, "execution_error", "error")


@pytest.mark.parametrize("version", ["0.33.0", "0.3.64"])
async def test_cancel_interrupts_the_running_prompt(make_harness: MakeHarness, version: str) -> None:
    harness = await make_harness(version)
    job_id = await harness.run(sleep_prompt(30))
    await harness.wait_status(job_id, JobStatus.IN_PROGRESS)
    await harness.wait_event(job_id, "progress")
    # The dispatcher marks the job cancelling, then tells the instance.
    async with harness.db.session() as session:
        await transition(session, job_id, JobStatus.CANCELLING)
    assert await harness.instance.worker.interrupt(job_id, "cancel")
    job = await harness.wait_status(job_id, within=10)
    await harness.wait_idle()
    assert job.status == JobStatus.CANCELLED
    history = await history_of(harness, job_id)
    assert history.status["messages"][-1][0] == "execution_interrupted"
    assert_closing(harness, job_id, "execution_interrupted", "cancelled")
    async with httpx.AsyncClient(base_url=harness.comfy_url) as client:
        stats = (await client.get("/_sim/stats")).json()
    assert stats["running"] is None  # ComfyUI really stopped it


async def test_timeout_interrupt_ends_in_timeout(harness: Harness) -> None:
    job_id = await harness.run(sleep_prompt(30))
    await harness.wait_event(job_id, "progress")
    await harness.instance.worker.interrupt(job_id, "timeout")
    job = await harness.wait_status(job_id, within=10)
    assert job.status == JobStatus.TIMEOUT
    assert job.error["type"] == "execution_timeout"
    assert_closing(harness, job_id, "execution_interrupted", "timeout")


async def test_execution_deadline_is_enforced_by_the_instance(harness: Harness) -> None:
    job_id = await harness.create_job(sleep_prompt(30), max_attempts=1)
    # Re-claimed with a short deadline: the instance interrupts on its own when it passes.
    async with harness.db.session() as session:
        from sqlalchemy import text

        await session.execute(
            text("UPDATE jobs SET execution_deadline_at = now() + interval '1 second' WHERE id = :id"),
            {"id": job_id},
        )
    await harness.instance.worker.accept(job_id, 1)
    job = await harness.wait_status(job_id, within=15)
    assert job.status == JobStatus.TIMEOUT


async def test_cancel_before_the_job_reaches_comfyui(harness: Harness) -> None:
    job_id = await harness.create_job(basic_prompt())
    async with harness.db.session() as session:
        await transition(session, job_id, JobStatus.CANCELLING)
    await harness.instance.worker.accept(job_id, 1)
    job = await harness.wait_status(job_id)
    assert job.status == JobStatus.CANCELLED
    async with httpx.AsyncClient(base_url=harness.comfy_url) as client:
        assert (await client.get(f"/api/history/{job_id}")).json() == {}  # never submitted
    assert_closing(harness, job_id, "execution_interrupted", "cancelled")


async def test_missing_input_fails_with_a_clear_message(harness: Harness) -> None:
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "nope.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
    }
    job_id = await harness.run(prompt)
    job = await harness.wait_status(job_id)
    assert job.status == JobStatus.ERROR
    assert job.error["type"] == "missing_input"
    assert "nope.png" in job.error["message"] and job.error["node_id"] == "1"
    history = await history_of(harness, job_id)
    kind, payload = history.status["messages"][-1]
    assert kind == "execution_error" and payload["node_type"] == "LoadImage"
    assert "nope.png" in payload["exception_message"]
    assert_closing(harness, job_id, "execution_error", "error")


async def test_rejected_prompt_fails_with_comfyui_error(harness: Harness) -> None:
    prompt = basic_prompt()
    prompt["1"]["inputs"]["width"] = 0  # below min: ComfyUI answers 400
    job_id = await harness.run(prompt)
    job = await harness.wait_status(job_id)
    assert job.status == JobStatus.ERROR
    assert job.error["type"] == "prompt_rejected"
    assert job.error["node_errors"]["1"]["errors"][0]["type"] == "value_smaller_than_min"
    assert_closing(harness, job_id, "execution_error", "error")


async def test_secrets_reach_no_event_history_or_log(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    token = "secret-token-0123456789abcdef"
    job_id = await harness.run(failing_prompt(), secrets={"auth_token_comfy_org": token})
    await harness.wait_status(job_id)
    await harness.wait_idle()
    history = await history_of(harness, job_id)
    job = await harness.job(job_id)
    assert job.sealed_secrets is None
    assert token not in repr(history.status) + repr(history.outputs) + repr(job.error)
    assert all(token not in repr(e.data) for e in harness.events_of(job_id))
    assert token not in caplog.text


async def test_timeout_set_by_the_dispatcher_keeps_its_status_and_gets_history(harness: Harness) -> None:
    job_id = await harness.run(sleep_prompt(30))
    await harness.wait_event(job_id, "progress")
    # The dispatcher's deadline sweep ends the job first, then asks the instance to interrupt it.
    async with harness.db.session() as session:
        await transition(
            session, job_id, JobStatus.TIMEOUT, error={"type": "execution_timeout", "message": "late"}
        )
    await harness.instance.worker.interrupt(job_id, "timeout")
    await harness.wait_idle(within=10)
    job = await harness.job(job_id)
    assert job.status == JobStatus.TIMEOUT and job.error["message"] == "late"
    history = await history_of(harness, job_id)
    assert history is not None and history.status["messages"][-1][0] == "execution_interrupted"
    assert_closing(harness, job_id, "execution_interrupted", "timeout")
