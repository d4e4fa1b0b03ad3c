"""Output files: streamed into storage with flat memory, retried with backoff, a job completed only when
every output is stored."""

from __future__ import annotations

import tracemalloc
import uuid
from collections.abc import AsyncIterable
from pathlib import Path

import pytest

from comfy_cloud.storage import LocalStorage, StorageError, StoredObject
from database.job_states import JobStatus
from database.repositories.results import ResultRepository
from services.inference.outputs import OutputStore, RetryPolicy
from tests.inference.conftest import Harness, MakeHarness, basic_prompt


class FlakyStorage(LocalStorage):
    """Local storage whose first `failures` uploads fail, as a storage outage would."""

    def __init__(self, root: Path, failures: int) -> None:
        super().__init__(root)
        self.failures = failures
        self.calls = 0

    async def put_stream(self, chunks: AsyncIterable[bytes], *, content_type: str) -> StoredObject:
        self.calls += 1
        if self.calls <= self.failures:
            async for _ in chunks:  # read part of the body, then fail, like a dropped upload
                break
            raise StorageError("storage unavailable (injected)")
        return await super().put_stream(chunks, content_type=content_type)


def output_store(harness: Harness, job_id: uuid.UUID, policy: RetryPolicy | None = None) -> OutputStore:
    """An output store of the harness's instance and user, as a job's runner makes it."""
    return OutputStore(
        comfy=harness.instance.comfy,
        storage=harness.storage,
        db=harness.db,
        job_id=job_id,
        user_id=harness.user_id,
        policy=policy or RetryPolicy(),
    )


async def test_failed_uploads_are_retried(make_harness: MakeHarness, tmp_path: Path) -> None:
    storage = FlakyStorage(tmp_path / "flaky", failures=2)
    harness = await make_harness(storage=storage)
    job_id = await harness.run(basic_prompt())
    job = await harness.wait_status(job_id)
    assert job.status == JobStatus.COMPLETED, job.error
    assert storage.calls == 3


async def test_outputs_that_cannot_be_stored_fail_the_job(make_harness: MakeHarness, tmp_path: Path) -> None:
    storage = FlakyStorage(tmp_path / "broken", failures=10**6)
    harness = await make_harness(storage=storage, upload_attempts=3)
    job_id = await harness.run(basic_prompt())
    job = await harness.wait_status(job_id)
    assert job.status == JobStatus.ERROR
    assert job.error["type"] == "output_storage_failed" and "test_00001_.png" in job.error["message"]
    await harness.wait_idle()
    async with harness.db.session() as session:
        history = await ResultRepository(session).history_of(job_id)
    assert history is not None and history.status["status_str"] == "error"
    assert history.status["messages"][-1][0] == "execution_error"
    types = harness.types_of(job_id)
    assert types[-3:] == ["execution_error", "executing", "cc.job_status"]
    assert "execution_success" not in types


@pytest.mark.parametrize("size_mb", [1024])
async def test_large_output_streams_with_flat_memory(
    make_harness: MakeHarness, comfyui_dir: Path, size_mb: int
) -> None:
    # The case: a 1 GiB output (a sparse file: ~7 s here, mostly hashing and writing it).
    # ComfyUI (the simulator) runs in its own process: only this process's memory is traced.
    harness = await make_harness(comfyui_dir=comfyui_dir)
    big = comfyui_dir / "data" / "output" / "video" / "big.mp4"
    big.parent.mkdir(parents=True)
    with big.open("wb") as file:
        file.truncate(size_mb << 20)
    job_id = await harness.create_job(basic_prompt())
    store = output_store(harness, job_id)
    outputs = {
        "9": {
            "video": [{"filename": "big.mp4", "subfolder": "video", "type": "output", "format": "video/mp4"}]
        }
    }
    tracemalloc.start()
    try:
        await store.store(outputs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert not store.failures
    assert peak < 16 << 20, f"peak {peak >> 20} MiB for a {size_mb} MiB file"
    [record] = store.records(outputs)
    assert record.item["filename"] == f"big_{job_id.hex[:8]}.mp4" and record.item["subfolder"] == "video"
    async with harness.db.session() as session:
        file = await ResultRepository(session).get_file(
            harness.user_id, "output", "video", record.item["filename"]
        )
    assert file is not None and file.size == size_mb << 20 and file.content_type == "video/mp4"
    assert file.id == record.file_id


async def test_a_file_comfyui_lost_is_not_retried(harness: Harness) -> None:
    store = output_store(harness, uuid.uuid4(), RetryPolicy(attempts=5, backoff=10))
    await store.store({"1": {"images": [{"filename": "gone.png", "subfolder": "", "type": "temp"}]}})
    assert list(store.failures) and "no temp file" in next(iter(store.failures.values()))


async def test_an_output_name_taken_by_another_job_is_made_unique(
    make_harness: MakeHarness, comfyui_dir: Path
) -> None:
    """Two jobs whose ids share their first 8 hex digits, and the same name from ComfyUI (its counter
    restarts on every worker): the second job's output gets the whole job id, the first keeps its file."""
    harness = await make_harness(comfyui_dir=comfyui_dir)
    picture = comfyui_dir / "data" / "output" / "same_00001_.png"
    picture.parent.mkdir(parents=True, exist_ok=True)
    first_id = await harness.create_job(basic_prompt())
    second_id = await harness.create_job(
        basic_prompt(), job_id=uuid.UUID(first_id.hex[:8] + uuid.uuid4().hex[8:])
    )
    outputs = {"9": {"images": [{"filename": "same_00001_.png", "subfolder": "", "type": "output"}]}}
    records = []
    for job_id, content in ((first_id, b"first"), (second_id, b"second")):
        picture.write_bytes(content)
        store = output_store(harness, job_id)
        await store.store(outputs)
        assert not store.failures
        [record] = store.records(outputs)
        assert store.rewrite(outputs)["9"]["images"][0]["filename"] == record.item["filename"]
        records.append(record)
    assert records[0].item["filename"] == f"same_00001__{first_id.hex[:8]}.png"
    assert records[1].item["filename"] == f"same_00001__{second_id.hex}.png"
    async with harness.db.session() as session:
        files = ResultRepository(session)
        first = await files.get_file(harness.user_id, "output", "", records[0].item["filename"])
        second = await files.get_file(harness.user_id, "output", "", records[1].item["filename"])
    assert first is not None and first.id == records[0].file_id and first.job_id == first_id
    assert second is not None and second.id == records[1].file_id and second.job_id == second_id
    assert first.size == len(b"first") and second.size == len(b"second")
