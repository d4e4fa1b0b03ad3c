"""Queue routes: the scheduling nudge, cancels, queue statistics, and Prometheus metrics."""

from __future__ import annotations

import logging
import uuid

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from services.dispatcher.queue import service
from services.dispatcher.queue.schemas import CancelAnswer, DispatchAnswer, QueueStats
from services.dispatcher.state import State

log = logging.getLogger(__name__)

router = APIRouter(tags=["queue"])


@router.post("/dispatch", status_code=202, responses={503: {"description": "the pass failed"}})
async def dispatch(state: State) -> DispatchAnswer:
    """Run a scheduling pass now (shared with any other nudge that came in meanwhile)."""
    return DispatchAnswer(assigned=await state.loop.request_pass())


@router.post("/jobs/{job_id}/cancel", responses={404: {"description": "no such job"}})
async def cancel(state: State, job_id: uuid.UUID) -> CancelAnswer:
    outcome = await service.cancel_job(state, job_id)
    return CancelAnswer(cancelled=outcome.cancelled, status=outcome.status.value)


@router.get("/queue")
async def queue(state: State) -> QueueStats:
    return await service.queue_stats(state)


_METRICS = {
    200: {
        "description": "Prometheus text exposition format",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


@router.get("/metrics", response_class=Response, responses=_METRICS)
async def metrics(state: State) -> Response:
    try:
        await service.refresh_gauges(state)
    except Exception:
        log.warning("could not refresh the queue gauges; serving the last values", exc_info=True)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
