"""The ComfyUI client against both imitated versions: capabilities, errors, version fallbacks."""

from __future__ import annotations

import uuid

import pytest

from services.inference.comfyui.client import PromptRejected, ViewNotFound
from services.inference.comfyui.remote_state import Remote, read_state
from tests.inference.conftest import MakeHarness, basic_prompt, sleep_prompt, wait_for


@pytest.mark.parametrize(("version", "jobs_api"), [("0.33.0", True), ("0.3.64", False)])
async def test_capabilities_and_state_per_version(
    make_harness: MakeHarness, version: str, jobs_api: bool
) -> None:
    harness = await make_harness(version)
    comfy = harness.instance.comfy
    assert (await comfy.features())["supports_preview_metadata"] is True
    assert (await comfy.system_stats())["system"]["comfyui_version"] == version
    unknown = str(uuid.uuid4())
    assert (await read_state(comfy, unknown)).status is Remote.UNKNOWN
    assert comfy.has_jobs_api is jobs_api

    running, pending = str(uuid.uuid4()), str(uuid.uuid4())
    client_id = "someone-else"
    await comfy.submit(sleep_prompt(30), prompt_id=running, client_id=client_id, extra_data={})
    await comfy.submit(basic_prompt(), prompt_id=pending, client_id=client_id, extra_data={})

    async def state(prompt_id: str) -> Remote:
        return (await read_state(comfy, prompt_id)).status

    await wait_for(lambda: _is(state(running), Remote.RUNNING), 10, "the prompt to run")
    assert await state(pending) is Remote.PENDING
    await comfy.cancel(pending)  # pending: dequeued (per-job cancel, or /queue delete on 0.3.64)
    await comfy.cancel(running)  # running: interrupted
    await wait_for(lambda: _is(state(running), Remote.FINISHED), 10, "the interrupt")
    finished = await read_state(comfy, running)
    assert finished.history and finished.history["status"]["messages"][-1][0] == "execution_interrupted"
    assert await state(pending) is Remote.UNKNOWN  # a dequeued prompt never reaches history
    assert comfy.has_job_cancel is jobs_api


@pytest.mark.parametrize(
    ("version", "error_type"), [("0.33.0", "missing_node_type"), ("0.3.64", "invalid_prompt")]
)
async def test_rejection_carries_comfyui_error(
    make_harness: MakeHarness, version: str, error_type: str
) -> None:
    harness = await make_harness(version)
    prompt = {"1": {"class_type": "NoSuchNode", "inputs": {}}}
    with pytest.raises(PromptRejected) as caught:
        await harness.instance.comfy.submit(prompt, prompt_id=str(uuid.uuid4()), client_id="c", extra_data={})
    assert caught.value.error["type"] == error_type


async def test_view_of_a_missing_file(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    with pytest.raises(ViewNotFound):
        async with harness.instance.comfy.view("nope.png", "", "output"):
            pass


async def _is(value: object, expected: Remote) -> bool:
    return await value == expected  # type: ignore[misc]
