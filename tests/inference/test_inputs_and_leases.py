"""Inputs travel content-addressed into ComfyUI; a job whose lease was lost is not reported."""

from __future__ import annotations

import hashlib
import io

import httpx
import pytest
from PIL import Image
from sqlalchemy import select, text

from comfy_cloud.broadcast.events import JOB_STATUS
from database.job_states import JobStatus
from database.models import FileRelationship
from database.repositories.queue import QueueRepository
from database.repositories.results import ResultRepository
from tests.inference.conftest import Harness, MakeHarness, png, sleep_prompt, wait_for


def load_invert_save(image: str) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv"}},
    }


async def stored_image(harness: Harness, item: dict) -> Image.Image:
    async with harness.db.session() as session:
        file = await ResultRepository(session).get_file(
            harness.user_id, item["type"], item["subfolder"], item["filename"]
        )
    assert file is not None
    path = harness.storage.local_path(file.storage_key)
    assert path is not None
    return Image.open(io.BytesIO(path.read_bytes())).convert("RGB")


@pytest.mark.parametrize("version", ["0.33.0", "0.3.64"])
async def test_user_input_is_uploaded_content_addressed(make_harness: MakeHarness, version: str) -> None:
    harness = await make_harness(version)
    data = png(color=(10, 200, 30))
    file_id = await harness.upload("photo.png", data, subfolder="holiday")
    job_id = await harness.run(load_invert_save("holiday/photo.png"))
    job = await harness.wait_status(job_id)
    assert job.status == JobStatus.COMPLETED, job.error

    expected_name = f"cc-inputs/{hashlib.sha256(data).hexdigest()[:32]}.png"
    async with httpx.AsyncClient(base_url=harness.comfy_url) as client:
        entry = (await client.get(f"/api/history/{job_id}")).json()[str(job_id)]
        uploaded = await client.get(
            "/api/view",
            params={"filename": expected_name.split("/")[1], "subfolder": "cc-inputs", "type": "input"},
        )
    assert entry["prompt"][2]["1"]["inputs"]["image"] == expected_name
    assert uploaded.content == data
    async with harness.db.session() as session:
        history = await ResultRepository(session).history_of(job_id)
        links = (
            await session.execute(select(FileRelationship).where(FileRelationship.job_id == job_id))
        ).scalars()
        relations = {(link.file_id, link.relation) for link in links}
    assert (file_id, "input") in relations
    [item] = history.outputs["3"]["images"]
    assert (await stored_image(harness, item)).getpixel((0, 0)) == (
        245,
        54,
        225,
    )  # ComfyUI truncates (protocol reference §3.5)


async def test_earlier_output_as_input(harness: Harness) -> None:
    first = await harness.run(sleep_prompt(0.1))
    await harness.wait_status(first, JobStatus.COMPLETED)
    name = f"slept_00001__{first.hex[:8]}.png"
    job_id = await harness.run(load_invert_save(f"{name} [output]"))
    job = await harness.wait_status(job_id)
    assert job.status == JobStatus.COMPLETED, job.error


async def test_same_bytes_uploaded_once_for_two_inputs(harness: Harness) -> None:
    data = png(color=(1, 2, 3))
    await harness.upload("a.png", data)
    await harness.upload("b.png", data)
    prompt = load_invert_save("a.png")
    prompt["4"] = {"class_type": "LoadImage", "inputs": {"image": "b.png"}}
    prompt["5"] = {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "b"}}
    job_id = await harness.run(prompt)
    job = await harness.wait_status(job_id)
    assert job.status == JobStatus.COMPLETED, job.error
    async with httpx.AsyncClient(base_url=harness.comfy_url) as client:
        entry = (await client.get(f"/api/history/{job_id}")).json()[str(job_id)]
    assert entry["prompt"][2]["1"]["inputs"]["image"] == entry["prompt"][2]["4"]["inputs"]["image"]


async def test_another_users_file_is_not_an_input(make_harness: MakeHarness) -> None:
    harness = await make_harness()
    await harness.upload("mine.png", png())
    # The same name for another user: the harness user's job must not see it.
    other = await make_harness()
    job_id = await other.run(load_invert_save("mine.png"))
    job = await other.wait_status(job_id)
    assert job.status == JobStatus.ERROR and job.error["type"] == "missing_input"


async def test_late_report_after_the_lease_was_lost_is_refused(harness: Harness) -> None:
    job_id = await harness.run(sleep_prompt(2))
    await harness.wait_status(job_id, JobStatus.IN_PROGRESS)
    # No heartbeats renew the lease here: let it expire; the job goes back to the queue.
    async with harness.db.session() as session:
        await session.execute(
            text("UPDATE jobs SET lease_expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": job_id},
        )
        expired = await QueueRepository(session).expire_leases()
    assert [e.id for e in expired] == [job_id]
    await harness.wait_idle(within=20)  # the run ends in ComfyUI, and its report is refused
    job = await harness.job(job_id)
    assert job.status == JobStatus.PENDING and job.instance_id is None
    async with harness.db.session() as session:
        assert await ResultRepository(session).history_of(job_id) is None
        assert await ResultRepository(session).outputs_of(job_id) == []
    statuses = [e.data["status"] for e in harness.events_of(job_id) if e.type == JOB_STATUS]
    assert statuses == ["in_progress"]


async def test_job_taken_by_another_instance_is_dropped_at_start(harness: Harness) -> None:
    job_id = await harness.create_job(sleep_prompt(5))
    async with harness.db.session() as session:
        await session.execute(
            text("UPDATE jobs SET instance_id = NULL, status = 'pending' WHERE id = :id"), {"id": job_id}
        )
    with pytest.raises(Exception, match="not assigned"):
        await harness.instance.worker.accept(job_id, 1)


async def test_lost_job_is_interrupted_in_comfyui(harness: Harness) -> None:
    job_id = await harness.run(sleep_prompt(30))
    await harness.wait_event(job_id, "progress")
    harness.instance.worker.lost(job_id)  # what a heartbeat answer without the job means
    await harness.wait_idle(within=10)
    async with httpx.AsyncClient(base_url=harness.comfy_url) as client:

        async def stopped() -> bool:
            return (await client.get("/_sim/stats")).json()["running"] is None

        await wait_for(stopped, 10, "ComfyUI to stop the prompt")
    assert (await harness.job(job_id)).status == JobStatus.IN_PROGRESS  # left to the lease logic
