"""Node and server information routes (§2.4, §2.5)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from comfy_cloud.simulator.config import feature_flags, model_folders, system_stats
from comfy_cloud.simulator.responses import empty, json_bytes, json_response
from comfy_cloud.simulator.state import SimState


def _state(request: Request) -> SimState:
    return request.app.state.sim


async def object_info(request: Request) -> Response:
    return json_bytes(_state(request).catalog.serialized())


async def object_info_class(request: Request) -> Response:
    name = request.path_params["node_class"]
    definition = _state(request).catalog.all().get(name)
    return json_response({} if definition is None else {name: definition})


async def get_system_stats(request: Request) -> Response:
    state = _state(request)
    return json_response(system_stats(state.config, state.argv))


async def get_features(request: Request) -> Response:
    return json_response(feature_flags(_state(request).config))


async def embeddings(request: Request) -> Response:
    return json_response([])


async def models(request: Request) -> Response:
    return json_response(model_folders(_state(request).config))


async def models_in_folder(request: Request) -> Response:
    if request.path_params["folder"] not in model_folders(_state(request).config):
        return empty(404)
    return json_response([])  # a simulator has no model files


async def extensions(request: Request) -> Response:
    return json_response([])  # no frontend package and no custom node web directories
