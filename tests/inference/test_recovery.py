"""The socket heals itself and the job's true state is recovered: dropped sockets, a socket ComfyUI
stopped addressing, a job that ended while no socket listened, and ComfyUI restarts."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from comfy_cloud.broadcast.events import JOB_STATUS
from database.job_states import JobStatus
from database.repositories.results import ResultRepository
from services.inference import tracking
from tests.inference.conftest import Harness, MakeHarness, sleep_prompt, wait_for


async def comfy_history(harness: Harness, job_id: uuid.UUID) -> dict:
    async with httpx.AsyncClient(base_url=harness.comfy_url) as client:
        return (await client.get(f"/api/history/{job_id}")).json()


async def assert_completed_with_outputs(harness: Harness, job_id: uuid.UUID) -> None:
    job = await harness.wait_status(job_id, within=30)
    assert job.status == JobStatus.COMPLETED, job.error
    await harness.wait_idle()
    async with harness.db.session() as session:
        history = await ResultRepository(session).history_of(job_id)
        outputs = await ResultRepository(session).outputs_of(job_id)
    assert history is not None and history.status["status_str"] == "success"
    [item] = history.outputs["3"]["images"]
    assert item["filename"] == f"slept_00001__{job_id.hex[:8]}.png"
    assert [o.item for o in outputs] == [item] and outputs[0].file_id is not None
    types = harness.types_of(job_id)
    assert types[-3:] == ["execution_success", "executing", JOB_STATUS]
    executed = [e for e in harness.events_of(job_id) if e.type == "executed"]
    assert [e.data["output"]["images"] for e in executed] == [[item]]


@pytest.mark.parametrize("version", ["0.33.0", "0.3.64"])
async def test_dropped_socket_mid_job_recovers(make_harness: MakeHarness, version: str) -> None:
    harness = await make_harness(version)
    follower = harness.instance.follower
    job_id = await harness.run(sleep_prompt(1.5))
    await harness.wait_event(job_id, "progress")
    assert (await harness.sim_post("/_sim/drop_sockets")).status_code == 200
    await wait_for(lambda: follower.connections >= 2 and follower.connected.is_set(), 10, "a reconnect")
    await assert_completed_with_outputs(harness, job_id)


@pytest.mark.parametrize("version", ["0.33.0", "0.3.64"])
async def test_job_that_ended_while_no_socket_listened(make_harness: MakeHarness, version: str) -> None:
    harness = await make_harness(version)
    job_id = await harness.run(sleep_prompt(0.6))
    await harness.wait_status(job_id, JobStatus.IN_PROGRESS)
    await harness.instance.follower.stop()  # the socket is gone while ComfyUI finishes the job
    await wait_for(lambda: comfy_history(harness, job_id), 10, "ComfyUI to finish")
    assert (await harness.job(job_id)).status == JobStatus.IN_PROGRESS  # nothing decided blindly
    harness.instance.follower.start()
    # Recovered from history: the missed `executed` and the terminal message are rebuilt.
    await assert_completed_with_outputs(harness, job_id)


async def test_job_finished_before_the_start_was_seen(harness: Harness) -> None:
    await harness.instance.follower.stop()
    job_id = await harness.run(sleep_prompt(0.1))
    await wait_for(lambda: comfy_history(harness, job_id), 10, "ComfyUI to finish")
    harness.instance.follower.start()
    await assert_completed_with_outputs(harness, job_id)
    job = await harness.job(job_id)
    assert job.started_at is not None


async def test_socket_comfyui_stopped_addressing_is_revived(make_harness: MakeHarness) -> None:
    harness = await make_harness(silence_timeout=0.5)
    follower = harness.instance.follower
    job_id = await harness.run(sleep_prompt(3))
    await harness.wait_event(job_id, "progress")
    # ComfyUI's quirk (§4.1 item 6): a second socket with our clientId replaces ours in its registry,
    # and when that one closes our socket is unregistered too: connected, yet silent.
    url = harness.comfy_url.replace("http://", "ws://") + f"/ws?clientId={harness.instance.client_id}"
    async with connect(url, proxy=None) as intruder:
        await intruder.recv()
    await wait_for(lambda: follower.connections >= 2, 10, "the silent socket to be replaced")
    await assert_completed_with_outputs(harness, job_id)


async def test_comfyui_restart_mid_job_requeues_it(harness: Harness) -> None:
    job_id = await harness.run(sleep_prompt(5))
    await harness.wait_event(job_id, "progress")
    assert (await harness.sim_post("/_sim/restart", {"down_seconds": 0.5})).status_code == 200
    job = await harness.wait_status(job_id, JobStatus.PENDING, within=20)
    assert job.instance_id is None and job.attempts == 1
    await harness.wait_idle()
    assert harness.events_of(job_id)[-1].data == {"status": "pending"}
    async with harness.db.session() as session:
        assert await ResultRepository(session).history_of(job_id) is None


async def test_comfyui_restart_on_last_attempt_fails_the_job(harness: Harness) -> None:
    job_id = await harness.run(sleep_prompt(5), max_attempts=1)
    await harness.wait_event(job_id, "progress")
    await harness.sim_post("/_sim/restart", {"down_seconds": 0.2})
    job = await harness.wait_status(job_id, within=20)
    assert job.status == JobStatus.ERROR
    assert job.error["type"] == "worker_lost"
    await harness.wait_idle()
    types = harness.types_of(job_id)
    assert types[-3:] == ["execution_error", "executing", JOB_STATUS]


async def test_comfyui_down_for_good_gives_the_job_back(make_harness: MakeHarness) -> None:
    harness = await make_harness(comfyui_lost_timeout=1.0)
    job_id = await harness.run(sleep_prompt(5))
    await harness.wait_event(job_id, "progress")
    assert harness.sim is not None
    await harness.sim.stop()  # gone, not coming back
    job = await harness.wait_status(job_id, JobStatus.PENDING, within=20)
    assert job.instance_id is None


async def test_a_quiet_job_is_checked_at_the_silence_pace(
    make_harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = await make_harness(capacity=2, silence_timeout=0.3)
    checks: list[str] = []
    real_read_state = tracking.read_state

    async def counting(comfy: Any, prompt_id: str) -> Any:
        checks.append(prompt_id)
        return await real_read_state(comfy, prompt_id)

    monkeypatch.setattr(tracking, "read_state", counting)
    first = await harness.run(sleep_prompt(2))
    second = await harness.run(sleep_prompt(0.1))  # waits in ComfyUI's queue, hearing nothing
    await harness.wait_status(second, JobStatus.COMPLETED, within=20)
    await harness.wait_status(first, JobStatus.COMPLETED)
    quiet = checks.count(str(second))
    assert 2 <= quiet <= 15, f"{quiet} checks in ~2 s of silence"
