"""Our job rows in ComfyUI's and Comfy Cloud's shapes.

The status always comes from the job row (`job_states.API_STATUS`), the rest from the history row the
worker wrote when the job ended: outputs (names as the user sees them), status with its timestamped
messages, and meta. A job that ended without running on ComfyUI (cancelled while queued, timed out,
no instance could run it) has no history row: it is shown with empty outputs and an error status.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from comfy_cloud.comfyui.jobs import job_from_history, job_from_queue_item, prune_none
from database.job_states import API_STATUS, TERMINAL_STATUSES, JobStatus
from database.models import History, Job
from services.ingest.queue.service import number_of, public_extra_data, queue_item
from services.ingest.state import ms

# Comfy Cloud's raw job states (GET /api/job/{id}/status), so Cloud clients see the values they poll for.
RAW_STATUS: dict[JobStatus, str] = {
    JobStatus.PENDING: "queued_waiting",
    JobStatus.ASSIGNED: "allocated",
    JobStatus.IN_PROGRESS: "executing",
    JobStatus.CANCELLING: "cancel_requested",
    JobStatus.COMPLETED: "success",
    JobStatus.ERROR: "error",
    JobStatus.TIMEOUT: "error",
    JobStatus.CANCELLED: "cancelled",
}


def is_finished(job: Job) -> bool:
    return JobStatus(job.status) in TERMINAL_STATUSES


def history_status(job: Job, history: History | None) -> dict[str, Any]:
    if history is not None and history.status:
        return history.status
    messages: list[Any] = []
    if isinstance(job.error, dict) and "exception_message" in job.error:
        messages.append(["execution_error", job.error])  # already in ComfyUI's shape
    completed = job.status == JobStatus.COMPLETED
    return {"status_str": "success" if completed else "error", "completed": completed, "messages": messages}


def history_entry(job: Job, history: History | None) -> dict[str, Any]:
    """ComfyUI's history entry {prompt, outputs, status, meta} (protocol reference §3.3)."""
    return {
        "prompt": queue_item(job),
        "outputs": history.outputs if history is not None else {},
        "status": history_status(job, history),
        "meta": history.meta if history is not None else {},
    }


def _create_time(job: Job) -> int | None:
    value = (job.extra_data or {}).get("create_time")
    return value if isinstance(value, int) else ms(job.created_at)


def job_item(job: Job, history: History | None, *, detail: bool = False) -> dict[str, Any]:
    """A JobListItem (or, with detail, a JobDetail) of the jobs API (protocol reference §3.4)."""
    status = API_STATUS[JobStatus(job.status)]
    if not is_finished(job):
        item = job_from_queue_item(queue_item(job), status)
        item["create_time"] = _create_time(job)
        if detail:
            item["workflow"] = {"prompt": job.prompt, "extra_data": public_extra_data(job.extra_data)}
    else:
        item = job_from_history(str(job.id), history_entry(job, history), include_outputs=detail)
        item["status"] = status
        item["create_time"] = _create_time(job)
        if "execution_start_time" not in item and job.started_at is not None:
            # Ended without a history row (timeout, lost instance): our own clock.
            item.update(
                prune_none(
                    {"execution_start_time": ms(job.started_at), "execution_end_time": ms(job.finished_at)}
                )
            )
    if detail:
        item["update_time"] = ms(_latest(job.updated_at, history.updated_at if history else None))
    return _ordered(item)


_KEY_ORDER = (
    "id", "status", "priority", "create_time", "execution_start_time", "execution_end_time",
    "execution_error", "outputs_count", "previewable_outputs_count", "preview_output", "workflow_id",
    "outputs", "execution_status", "workflow", "update_time",
)  # fmt: skip


def _ordered(item: dict[str, Any]) -> dict[str, Any]:
    # ComfyUI's key order (JSON objects are unordered, but people read these).
    known = {k: item[k] for k in _KEY_ORDER if k in item}
    return {**known, **{k: v for k, v in item.items() if k not in known}}


def _latest(*moments: datetime | None) -> datetime | None:
    present = [m for m in moments if m is not None]
    return max(present) if present else None


def _without_workflow(extra_data: dict[str, Any]) -> dict[str, Any]:
    pnginfo = extra_data.get("extra_pnginfo")
    if isinstance(pnginfo, dict) and "workflow" in pnginfo:
        extra_data = {**extra_data, "extra_pnginfo": {k: v for k, v in pnginfo.items() if k != "workflow"}}
    return extra_data


def history_v2_entry(job: Job, history: History | None) -> dict[str, Any]:
    """Cloud's lightweight history entry (GET /api/history_v2)."""
    entry = history_entry(job, history)
    return prune_none(
        {
            "prompt_id": str(job.id),
            "create_time": _create_time(job),
            "workflow_id": job.workflow_id,
            "prompt": {
                "priority": number_of(job),
                "prompt_id": str(job.id),
                "extra_data": _without_workflow(public_extra_data(job.extra_data)),
            },
            "outputs": entry["outputs"],
            "status": entry["status"],
            "meta": entry["meta"],
        }
    )


def history_v2_detail(job: Job, history: History | None) -> dict[str, Any]:
    """Cloud's full history entry (GET /api/history_v2/{id})."""
    entry = history_entry(job, history)
    return {
        "prompt": {
            "priority": number_of(job),
            "prompt_id": str(job.id),
            "prompt": job.prompt,
            "extra_data": public_extra_data(job.extra_data),
            "outputs_to_execute": list(job.outputs_to_execute),
        },
        "outputs": entry["outputs"],
        "status": entry["status"],
        "meta": entry["meta"],
    }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def job_status(job: Job, history: History | None) -> dict[str, Any]:
    """Cloud's GET /api/job/{id}/status: raw state and ISO times; error_message is JSON text."""
    error = None
    if JobStatus(job.status) in (JobStatus.ERROR, JobStatus.TIMEOUT):
        failure = job_item(job, history).get("execution_error") or job.error
        error = json.dumps(failure) if failure is not None else json.dumps({"status": job.status})
    return prune_none(
        {
            "id": str(job.id),
            "status": RAW_STATUS[JobStatus(job.status)],
            "created_at": _iso(job.created_at),
            "updated_at": _iso(job.updated_at),
            "last_state_update": _iso(job.updated_at),
            "assigned_inference": str(job.instance_id) if job.instance_id else None,
            "error_message": error,
        }
    )
