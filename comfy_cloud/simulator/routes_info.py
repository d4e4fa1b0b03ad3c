"""Node and server information routes (§2.4, §2.5)."""

from __future__ import annotations

from aiohttp import web

from comfy_cloud.simulator.config import feature_flags, model_folders, system_stats
from comfy_cloud.simulator.responses import empty, json_bytes, json_response, sim_state


async def object_info(request: web.Request) -> web.Response:
    return json_bytes(sim_state(request).catalog.serialized())


async def object_info_class(request: web.Request) -> web.Response:
    name = request.match_info["node_class"]
    definition = sim_state(request).catalog.all().get(name)
    return json_response({} if definition is None else {name: definition})


async def get_system_stats(request: web.Request) -> web.Response:
    state = sim_state(request)
    return json_response(system_stats(state.config, state.argv))


async def get_features(request: web.Request) -> web.Response:
    return json_response(feature_flags(sim_state(request).config))


async def embeddings(request: web.Request) -> web.Response:
    return json_response([])


async def models(request: web.Request) -> web.Response:
    return json_response(model_folders(sim_state(request).config))


async def models_in_folder(request: web.Request) -> web.Response:
    if request.match_info["folder"] not in model_folders(sim_state(request).config):
        return empty(404)
    return json_response([])  # a simulator has no model files


async def extensions(request: web.Request) -> web.Response:
    return json_response([])  # no frontend package and no custom node web directories
