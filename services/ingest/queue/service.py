"""The caller's queue as ComfyUI shows it, and queue management."""

from __future__ import annotations

from typing import Any

from comfy_cloud.secrets import SECRET_EXTRA_KEYS
from database.models import Job
from database.repositories.jobs import JobRepository
from services.ingest.auth.service import AuthenticatedUser
from services.ingest.cancellation import cancel_pending, parse_ids
from services.ingest.errors import InvalidBody
from services.ingest.state import IngestState


def number_of(job: Job) -> int | float:
    """ComfyUI shows counter numbers as integers and explicit ones as given; we store a double."""
    return int(job.number) if float(job.number).is_integer() else job.number


def public_extra_data(extra_data: dict[str, Any] | None) -> dict[str, Any]:
    # Credentials are split off before a job is stored; strip again so no path can ever show them.
    return {k: v for k, v in (extra_data or {}).items() if k not in SECRET_EXTRA_KEYS}


def queue_item(job: Job) -> list[Any]:
    return [
        number_of(job),
        str(job.id),
        job.prompt,
        public_extra_data(job.extra_data),
        list(job.outputs_to_execute),
    ]


async def get_queue(state: IngestState, user: AuthenticatedUser) -> dict[str, Any]:
    async with state.database.session() as session:
        running, pending = await JobRepository(session).queue(user.id)
    return {
        "queue_running": [queue_item(j) for j in running],
        "queue_pending": [queue_item(j) for j in pending],
    }


async def manage(state: IngestState, user: AuthenticatedUser, body: Any) -> None:
    """POST /queue: {"clear": true} and/or {"delete": [prompt_id...]}, pending jobs only."""
    if not isinstance(body, dict):
        raise InvalidBody("Request body must be a JSON object with 'delete' and/or 'clear'")
    delete = body.get("delete")
    if delete is not None and not isinstance(delete, list):
        raise InvalidBody("delete must be a list of prompt ids")
    if body.get("clear"):
        await cancel_pending(state, user, None)
    elif delete:
        await cancel_pending(state, user, parse_ids(delete))
