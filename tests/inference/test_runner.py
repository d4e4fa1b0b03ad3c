"""One job end to end on the simulator: events, outputs, history and the final status."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from comfy_cloud.broadcast.events import JOB_STATUS, PREVIEW, PROGRESS_TEXT
from database.job_states import JobStatus
from database.repositories.results import ResultRepository
from tests.inference.conftest import Harness, MakeHarness, basic_prompt, sleep_prompt


def full_prompt() -> dict[str, Any]:
    """Saved and temp images, previews with metadata, progress text and a text output."""
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 16, "height": 16, "batch_size": 2, "color": 255},
        },
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "ProbePreview", "inputs": {"image": ["2", 0], "steps": 2}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "out"}},
        "5": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "6": {"class_type": "GetImageSize", "inputs": {"image": ["1", 0]}},
        "7": {"class_type": "PreviewAny", "inputs": {"source": ["6", 0]}},
    }


async def comfy_file(harness: Harness, item: dict[str, Any]) -> bytes:
    async with httpx.AsyncClient(base_url=harness.comfy_url) as client:
        response = await client.get("/api/view", params=item)
        response.raise_for_status()
        return response.content


@pytest.mark.parametrize("version", ["0.33.0", "0.3.64"])
async def test_success_stores_every_output_byte_identical(make_harness: MakeHarness, version: str) -> None:
    harness = await make_harness(version)
    job_id = await harness.run(full_prompt())
    job = await harness.wait_status(job_id)
    assert job.status == JobStatus.COMPLETED, job.error
    await harness.wait_idle()
    suffix = job_id.hex[:8]

    async with harness.db.session() as session:
        results = ResultRepository(session)
        history = await results.history_of(job_id)
        outputs = await results.outputs_of(job_id)
    assert history is not None
    assert history.status["status_str"] == "success" and history.status["completed"] is True
    kinds = [m[0] for m in history.status["messages"]]
    assert kinds[0] == "execution_start" and kinds[-1] == "execution_success"
    assert all("timestamp" in m[1] for m in history.status["messages"])
    assert set(history.outputs) == {"4", "5", "7"}
    assert history.outputs["7"] == {"text": ["16"]} or history.outputs["7"]["text"]
    assert set(history.meta) == {"4", "5", "7"}
    assert sorted(job.output_types) == ["image"]

    # Every file item is renamed <stem>_<job hex><ext> and stored with ComfyUI's exact bytes.
    comfy_history = (await _comfy_history(harness, job_id))["outputs"]
    saved = history.outputs["4"]["images"]
    temp = history.outputs["5"]["images"]
    assert len(saved) == 2 and len(temp) == 2
    for ours, theirs in zip(
        saved + temp, comfy_history["4"]["images"] + comfy_history["5"]["images"], strict=True
    ):
        stem, ext = theirs["filename"].rsplit(".", 1)
        assert ours == {**theirs, "filename": f"{stem}_{suffix}.{ext}"}
        async with harness.db.session() as session:
            file = await ResultRepository(session).get_file(
                harness.user_id, ours["type"], ours["subfolder"], ours["filename"]
            )
        assert file is not None and file.job_id == job_id
        assert file.content_type == "image/png"
        path = harness.storage.local_path(file.storage_key)
        assert path is not None and path.read_bytes() == await comfy_file(harness, theirs)
    assert {o.item["type"] for o in outputs} == {"output", "temp"}
    assert len(outputs) == 4 and all(o.file_id for o in outputs)


@pytest.mark.parametrize("version", ["0.33.0", "0.3.64"])
async def test_events_relay_comfyui_messages_in_order(make_harness: MakeHarness, version: str) -> None:
    harness = await make_harness(version)
    job_id = await harness.run(full_prompt())
    await harness.wait_status(job_id, JobStatus.COMPLETED)
    await harness.wait_event(job_id, JOB_STATUS)
    await harness.wait_idle()
    events = harness.events_of(job_id)
    types = [e.type for e in events]
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert all(e.user_id == str(harness.user_id) for e in events)
    assert "status" not in types  # the worker's queue means nothing to users
    assert types[:2] == [JOB_STATUS, "execution_start"] or types[0] == "execution_start"
    # The end: terminal, the closing executing null, then the final status.
    assert types[-3:] == ["execution_success", "executing", JOB_STATUS]
    assert events[-2].data == {"node": None, "prompt_id": str(job_id)}
    assert events[-1].data == {"status": "completed"}
    statuses = [e.data["status"] for e in events if e.type == JOB_STATUS]
    assert statuses == ["in_progress", "completed"]

    previews = [e for e in events if e.type == PREVIEW]
    assert len(previews) == 2
    for preview in previews:
        assert preview.blob and preview.blob[:2] == b"\xff\xd8"  # JPEG
        assert preview.data["prompt_id"] == str(job_id) and preview.data["node_id"] == "3"
        assert preview.data["image_type"] == "image/jpeg"
    texts = [e for e in events if e.type == PROGRESS_TEXT]
    assert len(texts) == 1 and texts[0].data == {"node_id": "6"}
    assert texts[0].blob == b"width: 16, height: 16\n batch size: 2"

    # `executed` carries the renamed files, and each already resolves to a stored file.
    executed = {e.data["node"]: e.data for e in events if e.type == "executed"}
    assert set(executed) == {"4", "5", "7"}
    for item in executed["4"]["output"]["images"]:
        assert item["filename"].endswith(f"_{job_id.hex[:8]}.png")
    assert executed["7"]["output"] == {"text": ["16"]}
    for event in events:
        json.dumps(event.data)  # every event is JSON-serialisable (it travels as JSON)


async def test_submits_with_job_id_and_own_client_id(harness: Harness) -> None:
    job_id = await harness.run(basic_prompt())
    await harness.wait_status(job_id, JobStatus.COMPLETED)
    entry = await _comfy_history(harness, job_id)
    _number, prompt_id, _prompt, extra_data, outputs = entry["prompt"]
    assert prompt_id == str(job_id)
    assert extra_data["client_id"] == harness.instance.client_id
    assert extra_data["extra_pnginfo"] == {"workflow": {"id": "wf-1"}}
    assert outputs == ["3"]


async def _comfy_history(harness: Harness, job_id: uuid.UUID) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=harness.comfy_url) as client:
        return (await client.get(f"/api/history/{job_id}")).json()[str(job_id)]


async def test_two_jobs_queued_in_comfyui_keep_their_events_apart(make_harness: MakeHarness) -> None:
    harness = await make_harness(capacity=2)
    first = await harness.run(sleep_prompt(0.5))
    second = await harness.run(basic_prompt("second"))
    for job_id in (first, second):
        job = await harness.wait_status(job_id)
        assert job.status == JobStatus.COMPLETED, job.error
    await harness.wait_idle()
    for job_id in (first, second):
        events = harness.events_of(job_id)
        prompt_ids = {e.data.get("prompt_id") for e in events if e.type not in (JOB_STATUS, PROGRESS_TEXT)}
        assert prompt_ids == {str(job_id)}
        assert [e.type for e in events][-3:] == ["execution_success", "executing", JOB_STATUS]
    # ComfyUI ran them one after the other (its own clock, in the messages).
    start_of_second = next(e.data for e in harness.events_of(second) if e.type == "execution_start")
    end_of_first = next(e.data for e in harness.events_of(first) if e.type == "execution_success")
    assert start_of_second["timestamp"] >= end_of_first["timestamp"]


async def test_executed_names_resolve_before_the_job_ends(harness: Harness) -> None:
    prompt = sleep_prompt(2)
    prompt["4"] = {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}
    job_id = await harness.run(prompt)
    executed = await harness.wait_event(job_id, "executed")
    [item] = executed.data["output"]["images"]
    async with harness.db.session() as session:
        file = await ResultRepository(session).get_file(harness.user_id, "temp", "", item["filename"])
    assert file is not None  # what the owner sees in `executed` is already served by /api/view
    assert (await harness.job(job_id)).status == JobStatus.IN_PROGRESS
    await harness.wait_status(job_id, JobStatus.COMPLETED)
