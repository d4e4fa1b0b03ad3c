"""`/prompt`, `/queue`, `/interrupt`, `/free` and `/history` (§2.1, §2.2, §3.1)."""

from __future__ import annotations

import uuid
from typing import Any

from aiohttp import web

from comfy_cloud.comfyui.validation import PromptError, check_prompt_request, validate_prompt
from comfy_cloud.simulator.executor import now_ms
from comfy_cloud.simulator.graph import coerce_widgets, upstream
from comfy_cloud.simulator.responses import BadRequestBody, empty, json_response, read_json, sim_state
from comfy_cloud.simulator.state import SimState
from comfy_cloud.simulator.store import QueueItem

# Split off before queueing; never shown in /queue, /history or /jobs (E:157).
SENSITIVE_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")


class Crash(Exception):
    """Where ComfyUI's handler raises (a 500); the simulator keeps the quirk."""


def _number(state: SimState, body: Any) -> int | float:
    """Step 2 of POST /prompt: the counter advances even if the request is rejected later."""
    if not isinstance(body, dict | list | str):
        raise Crash("'in' on a non-container body")
    if isinstance(body, dict) and "number" in body:
        try:
            return float(body["number"])
        except (TypeError, ValueError) as exc:
            raise Crash(str(exc)) from exc
    front = isinstance(body, dict) and bool(body.get("front"))
    return state.store.next_number(front)


def _check_request(state: SimState, body: Any) -> None:
    try:
        check_prompt_request(body, style=state.config.error_style)
    except PromptError as exc:
        # The validator answers 400 where ComfyUI itself crashes (e.g. a prompt that is a list).
        if exc.error["type"] == "invalid_prompt":
            raise Crash(exc.error["message"]) from exc
        raise


def _extra_data(state: SimState, request: web.Request, body: dict[str, Any]) -> dict[str, Any]:
    extra: dict[str, Any] = body.get("extra_data", {})
    if "client_id" in body:
        extra["client_id"] = body["client_id"]
    if not state.config.is_legacy:
        usage = request.headers.get("comfy-usage-source")
        if usage and "comfy_usage_source" not in extra:
            extra["comfy_usage_source"] = usage
    for key in SENSITIVE_KEYS:
        extra.pop(key, None)
    if not state.config.is_legacy:
        extra["create_time"] = now_ms()
    return extra


async def post_prompt(request: web.Request) -> web.Response:
    state = sim_state(request)
    body = await read_json(request)
    number = _number(state, body)
    try:
        _check_request(state, body)
        result = validate_prompt(
            body["prompt"],
            state.catalog.all(),
            partial_execution_targets=body.get("partial_execution_targets"),
            style=state.config.error_style,
            file_exists=state.file_exists,
        )
    except PromptError as exc:
        return json_response(exc.body, exc.status)
    prompt_id = body.get("prompt_id")
    prompt_id = str(uuid.uuid4()) if prompt_id is None else str(prompt_id)
    extra = _extra_data(state, request, body)
    prompt, outputs = body["prompt"], list(result.outputs_to_execute)
    coerce_widgets(prompt, upstream(prompt, outputs), state.catalog.get)
    state.store.put(QueueItem(number, prompt_id, prompt, extra, outputs))
    state.counters["prompts_queued"] += 1
    return json_response({"prompt_id": prompt_id, "number": number, "node_errors": result.node_errors})


async def get_prompt(request: web.Request) -> web.Response:
    return json_response(sim_state(request).queue_info())


async def get_queue(request: web.Request) -> web.Response:
    store = sim_state(request).store
    running = [store.running.as_list()] if store.running is not None else []
    return json_response({"queue_running": running, "queue_pending": [i.as_list() for i in store.pending()]})


async def post_queue(request: web.Request) -> web.Response:
    store = sim_state(request).store
    body = await read_json(request)
    if not isinstance(body, dict):
        return empty()
    if body.get("clear"):
        store.wipe()
    for prompt_id in body.get("delete", ()):
        store.delete(prompt_id)
    return empty()


async def post_interrupt(request: web.Request) -> web.Response:
    try:
        body = await read_json(request)
    except BadRequestBody:
        body = {}
    prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
    sim_state(request).executor.interrupt(prompt_id or None)
    return empty()


async def post_free(request: web.Request) -> web.Response:
    body = await read_json(request)
    # unload_models / free_memory have nothing to free here; reading them keeps ComfyUI's 500 on non-objects.
    body.get("unload_models", False)
    body.get("free_memory", False)
    return empty()


async def get_history(request: web.Request) -> web.Response:
    query = request.query
    max_items = int(query["max_items"]) if "max_items" in query else None
    offset = int(query["offset"]) if "offset" in query else -1
    return json_response(sim_state(request).store.get_history(max_items, offset))


async def get_history_entry(request: web.Request) -> web.Response:
    return json_response(sim_state(request).store.history_entry(request.match_info["prompt_id"]))


async def post_history(request: web.Request) -> web.Response:
    store = sim_state(request).store
    body = await read_json(request)
    if not isinstance(body, dict):
        return empty()
    if body.get("clear"):
        store.clear_history()
    for prompt_id in body.get("delete", ()):
        store.delete_history(prompt_id)
    return empty()
