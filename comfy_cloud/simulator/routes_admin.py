"""Failure injection and introspection for tests (`/_sim/...`); see the package docstring."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from comfy_cloud.simulator.responses import json_response, read_json, sim_state


async def _optional_json(request: web.Request) -> dict[str, Any]:
    if not await request.read():
        return {}
    body = await read_json(request)
    return body if isinstance(body, dict) else {}


async def restart(request: web.Request) -> web.Response:
    body = await _optional_json(request)
    down = max(0.0, float(body.get("down_seconds", 0.0)))
    sim_state(request).request_restart(down)
    return json_response({"restarting": True, "down_seconds": down})


async def drop_sockets(request: web.Request) -> web.Response:
    state = sim_state(request)
    dropped = await state.hub.drop_all()
    state.counters["sockets_dropped"] += dropped
    return json_response({"dropped": dropped})


async def set_config(request: web.Request) -> web.Response:
    state = sim_state(request)
    body = await _optional_json(request)
    config = state.config
    if "node_delay" in body:
        config.node_delay = max(0.0, float(body["node_delay"]))
    if "class_delays" in body:
        config.class_delays = {str(k): max(0.0, float(v)) for k, v in dict(body["class_delays"]).items()}
    if "preview_size" in body:
        config.preview_size = max(1, int(body["preview_size"]))
    return json_response(
        {
            "node_delay": config.node_delay,
            "class_delays": config.class_delays,
            "preview_size": config.preview_size,
        }
    )


async def stats(request: web.Request) -> web.Response:
    return json_response(sim_state(request).stats())
