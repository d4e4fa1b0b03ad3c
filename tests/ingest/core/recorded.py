"""Recorded ComfyUI jobs, re-created as our rows (job + history) so responses can be compared key by key."""

from __future__ import annotations

import uuid
from typing import Any

from database.engine import Database
from database.job_states import JobStatus
from tests.ingest.core.conftest import add_job, load_fixture


def recorded_history_entries() -> dict[str, dict[str, Any]]:
    """prompt_id -> ComfyUI history entry, oldest first (the three finished runs recorded in full)."""
    entries: dict[str, dict[str, Any]] = {}
    entries.update(load_fixture("http/history-entry-0.33.0.json")["response"]["body"])
    for exchange in load_fixture("http/history-list-0.33.0.json")["exchanges"]:
        entries.update(exchange["response"]["body"])
    return dict(sorted(entries.items(), key=lambda kv: kv[1]["prompt"][3]["create_time"]))


def recorded_job_items() -> dict[str, dict[str, Any]]:
    body = load_fixture("http/jobs-list-0.33.0.json")["response"]["body"]
    return {item["id"]: item for item in body["jobs"]}


async def add_recorded_entry(
    db: Database, user_id: uuid.UUID, prompt_id: str, entry: dict[str, Any]
) -> uuid.UUID:
    number, _, prompt, extra_data, outputs = entry["prompt"]
    status = JobStatus.COMPLETED if entry["status"]["status_str"] == "success" else JobStatus.ERROR
    return await add_job(
        db, user_id, status, job_id=prompt_id, prompt=prompt, extra_data=extra_data, number=number,
        outputs_to_execute=outputs, history={k: entry[k] for k in ("outputs", "status", "meta")},
    )  # fmt: skip


def history_for_item(item: dict[str, Any]) -> dict[str, Any]:
    """A history entry that yields this recorded list item (for the items recorded without one)."""
    job_id = item["id"]
    messages: list[Any] = [
        ["execution_start", {"prompt_id": job_id, "timestamp": item["execution_start_time"]}]
    ]
    end = item["execution_end_time"]
    if item["status"] == "failed":
        messages.append(["execution_error", item["execution_error"]])
    elif item["status"] == "cancelled":
        interrupted = {
            "prompt_id": job_id,
            "node_id": "2",
            "node_type": "ProbeSleep",
            "executed": ["1"],
            "timestamp": end,
        }
        messages.append(["execution_interrupted", interrupted])
    else:
        messages.append(["execution_success", {"prompt_id": job_id, "timestamp": end}])
    outputs: dict[str, Any] = {}
    preview = item.get("preview_output")
    if preview:
        file = {k: preview[k] for k in ("filename", "subfolder", "type")}
        outputs = {preview["nodeId"]: {preview["mediaType"]: [file]}}
    completed = item["status"] == "completed"
    return {
        "outputs": outputs,
        "status": {
            "status_str": "success" if completed else "error",
            "completed": completed,
            "messages": messages,
        },
        "meta": {},
    }


async def add_recorded_item(db: Database, user_id: uuid.UUID, item: dict[str, Any]) -> uuid.UUID:
    status = {"completed": JobStatus.COMPLETED, "failed": JobStatus.ERROR, "cancelled": JobStatus.CANCELLED}[
        item["status"]
    ]
    extra_data: dict[str, Any] = {"create_time": item["create_time"]}
    if "workflow_id" in item:
        extra_data["extra_pnginfo"] = {"workflow": {"id": item["workflow_id"]}}
    return await add_job(
        db, user_id, status, job_id=item["id"], extra_data=extra_data, number=item["priority"],
        history=history_for_item(item), interrupted_while_running=True,
    )  # fmt: skip
