"""Queries behind the jobs and history routes; every one scoped to the caller."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from comfy_cloud.comfyui.jobs import JobsQuery
from database.job_states import TERMINAL_STATUSES, statuses_for_api
from database.repositories.jobs import JobFilter, JobRepository, JobWithHistory
from services.ingest.auth.service import AuthenticatedUser
from services.ingest.body import clean_param
from services.ingest.cancellation import parse_ids
from services.ingest.errors import InvalidBody
from services.ingest.jobs import views
from services.ingest.state import IngestState

HISTORY_CAP = 10_000  # ComfyUI keeps at most this many history entries; we answer at most this many


def parse_job_id(value: str) -> uuid.UUID | None:
    """A path id; anything that is not a UUID names no job (answered like an unknown id)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def list_jobs(state: IngestState, user: AuthenticatedUser, query: JobsQuery) -> dict[str, Any]:
    filt = JobFilter(
        statuses=statuses_for_api(set(query.statuses)),
        workflow_id=clean_param(query.workflow_id),
        output_types={query.output_type} if query.output_type else None,
        sort_by=query.sort_by,
        sort_order=query.sort_order,
        offset=query.offset,
        limit=query.limit,
    )
    async with state.database.session() as session:
        rows, total = await JobRepository(session).list(user.id, filt)
    jobs = [views.job_item(row.job, row.history) for row in rows]
    limit = query.limit if query.limit is not None else len(jobs)
    pagination = {
        "offset": query.offset,
        "limit": limit,
        "total": total,
        "has_more": query.offset + len(jobs) < total,
    }
    return {"jobs": jobs, "pagination": pagination}


async def get_job(state: IngestState, user: AuthenticatedUser, job_id: str) -> JobWithHistory | None:
    parsed = parse_job_id(job_id)
    if parsed is None:
        return None
    async with state.database.session() as session:
        return await JobRepository(session).get_with_history(user.id, parsed)


async def history(
    state: IngestState, user: AuthenticatedUser, max_items: int | None, offset: int | None
) -> dict[str, Any]:
    """ComfyUI's GET /history: finished jobs, oldest first, keyed by prompt id."""
    if max_items is None or max_items > HISTORY_CAP:
        max_items = HISTORY_CAP
    async with state.database.session() as session:
        rows = await JobRepository(session).history_page(user.id, max_items=max_items, offset=offset)
    return {str(row.job.id): views.history_entry(row.job, row.history) for row in rows}


async def history_v2(
    state: IngestState, user: AuthenticatedUser, max_items: int | None, offset: int
) -> dict[str, Any]:
    """Cloud's GET /api/history_v2: finished jobs, newest first."""
    limit = HISTORY_CAP if max_items is None else min(max_items, HISTORY_CAP)
    filt = JobFilter(statuses=set(TERMINAL_STATUSES), offset=offset, limit=limit)
    async with state.database.session() as session:
        rows, _ = await JobRepository(session).list(user.id, filt)
    return {"history": [views.history_v2_entry(row.job, row.history) for row in rows]}


async def finished_job(state: IngestState, user: AuthenticatedUser, job_id: str) -> JobWithHistory | None:
    """The caller's job if it has finished (only finished jobs have a history entry)."""
    found = await get_job(state, user, job_id)
    return found if found is not None and views.is_finished(found.job) else None


async def hide_history(state: IngestState, user: AuthenticatedUser, body: Mapping[str, Any]) -> None:
    delete = body.get("delete")
    if delete is not None and not isinstance(delete, list):
        raise InvalidBody("delete must be a list of prompt ids")
    async with state.database.session() as session:
        repo = JobRepository(session)
        if body.get("clear"):
            await repo.hide_from_history(user.id, None)
        elif delete:
            await repo.hide_from_history(user.id, parse_ids(delete))
