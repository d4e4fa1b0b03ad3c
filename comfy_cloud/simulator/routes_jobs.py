"""The jobs API of ComfyUI 0.33.0 (§2.2, §3.4); absent in 0.3.64 mode (404)."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from comfy_cloud.comfyui.jobs import (
    IN_PROGRESS,
    PENDING,
    JobsQueryError,
    job_from_history,
    job_from_queue_item,
    page_jobs,
    parse_jobs_query,
)
from comfy_cloud.comfyui.validation import is_canonical_uuid
from comfy_cloud.simulator.responses import json_response, sim_state
from comfy_cloud.simulator.state import SimState


def _all_jobs(state: SimState) -> list[dict[str, Any]]:
    """Running, then pending (heap order), then history, before sorting, as ComfyUI collects them."""
    store = state.store
    jobs = []
    if store.running is not None:
        jobs.append(job_from_queue_item(store.running.as_list(), IN_PROGRESS))
    jobs.extend(job_from_queue_item(item.as_list(), PENDING) for item in store.pending())
    jobs.extend(job_from_history(prompt_id, entry) for prompt_id, entry in store.history.items())
    return jobs


async def list_jobs(request: web.Request) -> web.Response:
    try:
        query = parse_jobs_query(request.query, cloud=False)
    except JobsQueryError as exc:
        return json_response(exc.body, exc.status)
    page, pagination = page_jobs(_all_jobs(sim_state(request)), query)
    return json_response({"jobs": page, "pagination": pagination})


async def get_job(request: web.Request) -> web.Response:
    store = sim_state(request).store
    job_id = request.match_info["job_id"]
    if job_id in store.history:
        return json_response(job_from_history(job_id, store.history[job_id], include_outputs=True))
    if store.running is not None and store.running.prompt_id == job_id:
        return json_response(job_from_queue_item(store.running.as_list(), IN_PROGRESS))
    for item in store.pending():
        if item.prompt_id == job_id:
            return json_response(job_from_queue_item(item.as_list(), PENDING))
    return json_response({"error": "Job not found"}, 404)


def _cancel(state: SimState, job_id: str) -> bool:
    """Interrupt it if running, dequeue it if pending; finished and unknown ids are a no-op."""
    if state.executor.interrupt(job_id):
        return True
    return state.store.delete(job_id)


async def cancel_job(request: web.Request) -> web.Response:
    return json_response({"cancelled": _cancel(sim_state(request), request.match_info["job_id"])})


async def cancel_jobs(request: web.Request) -> web.Response:
    try:
        body = json.loads(await request.read())
    except ValueError:
        return json_response({"error": "Request body must be valid JSON"}, 400)
    job_ids = body.get("job_ids") if isinstance(body, dict) else None
    if not isinstance(job_ids, list):
        return json_response({"error": "job_ids must be a list"}, 400)
    invalid = [job_id for job_id in job_ids if not is_canonical_uuid(job_id)]
    if invalid:
        return json_response({"error": "job_ids contains invalid id(s)", "invalid_ids": invalid}, 400)
    state = sim_state(request)
    results = [_cancel(state, job_id) for job_id in job_ids]
    return json_response({"cancelled": any(results)})
