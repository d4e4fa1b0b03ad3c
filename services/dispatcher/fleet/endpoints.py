"""Fleet routes: catalogues, registration, heartbeats, and the instance list."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Body, Response

from services.dispatcher.fleet import service
from services.dispatcher.fleet.schemas import (
    HeartbeatAnswer,
    HeartbeatBody,
    InstanceList,
    RegisterAnswer,
    RegisterBody,
)
from services.dispatcher.state import State

router = APIRouter(tags=["fleet"])


@router.put(
    "/catalogues/{catalogue_hash}",
    status_code=204,
    responses={
        204: {"description": "stored (or already there)", "content": {}},
        400: {"description": "the content does not hash to `catalogue_hash`"},
    },
)
async def put_catalogue(state: State, catalogue_hash: str, object_info: dict[str, Any] = Body()) -> Response:
    await service.put_catalogue(state, catalogue_hash, object_info)
    return Response(status_code=204)


@router.post(
    "/instances/register",
    responses={409: {"description": 'unknown catalogue: PUT it first ({"error": "unknown catalogue"})'}},
)
async def register(state: State, body: RegisterBody) -> RegisterAnswer:
    return await service.register(state, body)


@router.post(
    "/instances/{instance_id}/heartbeat",
    responses={404: {"description": "unknown or lost instance: register again"}},
)
async def heartbeat(state: State, instance_id: uuid.UUID, body: HeartbeatBody) -> HeartbeatAnswer:
    jobs = await service.heartbeat(state, instance_id, healthy=body.healthy, running=body.running)
    return HeartbeatAnswer(jobs={job_id: status.value for job_id, status in jobs.items()})


@router.get("/instances")
async def instances(state: State) -> InstanceList:
    return InstanceList(instances=await service.list_instances(state))
