"""`--comfyui-dir`: the instance starts ComfyUI's main.py itself and restarts it when it dies.

The "ComfyUI" here is a directory whose main.py takes ComfyUI's flags and serves the simulator, so
the supervisor drives a real child process exactly as it would drive ComfyUI.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from database.job_states import JobStatus
from services.inference.supervisor import ComfyUISupervisor
from tests.inference.conftest import MakeHarness, basic_prompt, sleep_prompt, wait_for


async def test_supervised_comfyui_runs_jobs_and_is_restarted(
    make_harness: MakeHarness, comfyui_dir: Path
) -> None:
    harness = await make_harness(comfyui_dir=comfyui_dir, comfyui_args="--cpu --preview-method auto")
    supervisor = harness.instance.supervisor
    assert supervisor is not None and supervisor.process is not None
    argv = (comfyui_dir / "argv.json").read_text()
    port = harness.comfy_url.rsplit(":", 1)[1]
    assert argv == (
        f'["--listen", "127.0.0.1", "--port", "{port}", "--disable-auto-launch", "--dont-print-server", '
        '"--cpu", "--preview-method", "auto"]'
    )
    job_id = await harness.run(basic_prompt())
    assert (await harness.wait_status(job_id, within=30)).status == JobStatus.COMPLETED

    # ComfyUI dies mid-job: the job is given back (attempts remain) and ComfyUI comes back.
    first_pid = supervisor.process.pid
    running = await harness.run(sleep_prompt(30))
    await harness.wait_event(running, "progress", within=30)
    os.kill(first_pid, signal.SIGKILL)
    job = await harness.wait_status(running, JobStatus.PENDING, within=30)
    assert job.instance_id is None
    await wait_for(lambda: supervisor.process and supervisor.process.pid != first_pid, 30, "a new process")
    await wait_for(lambda: _answers(harness.comfy_url), 60, "the restarted ComfyUI")
    assert supervisor.restarts == 1


async def test_supervisor_refuses_a_directory_without_main_py(tmp_path: Path) -> None:
    supervisor = ComfyUISupervisor(tmp_path, host="127.0.0.1", port=1)
    with pytest.raises(FileNotFoundError, match=r"main\.py"):
        await supervisor.start()


async def _answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient(base_url=url, timeout=2) as client:
            return (await client.get("/api/prompt")).status_code == 200
    except httpx.TransportError:
        return False
