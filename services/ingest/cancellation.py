"""Cancelling the caller's jobs, shared by /queue, /interrupt and the jobs API.

A pending job is cancelled here, in one conditional UPDATE (job_states): if the dispatcher claims it at
the same moment, exactly one of us wins. A job holding an instance (assigned, in_progress, cancelling)
is the dispatcher's to cancel: it marks it `cancelling` and tells the instance to interrupt ComfyUI.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from comfy_cloud.errors import NotFound, ServiceUnavailable
from database.job_states import ACTIVE_STATUSES, InvalidJobTransition, JobStatus, transition
from database.repositories.jobs import JobRepository
from services.ingest.auth.service import AuthenticatedUser
from services.ingest.state import IngestState

log = logging.getLogger(__name__)


async def cancel_pending(
    state: IngestState, user: AuthenticatedUser, job_ids: Iterable[uuid.UUID] | None
) -> int:
    """Cancel the caller's pending jobs among `job_ids` (all of them when None); running ones are left
    alone (ComfyUI's POST /queue semantics). Returns how many were cancelled."""
    cancelled: list[uuid.UUID] = []
    async with state.database.session() as session:
        repo = JobRepository(session)
        for job_id in await repo.pending_ids(user.id, None if job_ids is None else list(job_ids)):
            try:
                await transition(session, job_id, JobStatus.CANCELLED, expected={JobStatus.PENDING})
            except InvalidJobTransition:
                continue  # claimed meanwhile: it runs, as on ComfyUI
            cancelled.append(job_id)
    await state.publish_status(user.id, [(j, JobStatus.CANCELLED.value) for j in cancelled])
    return len(cancelled)


async def cancel_job(state: IngestState, user: AuthenticatedUser, job_id: uuid.UUID) -> bool:
    """Cancel one of the caller's jobs wherever it is; False for finished, foreign or unknown ids."""
    current: JobStatus | None
    async with state.database.session() as session:
        job = await JobRepository(session).get(user.id, job_id, include_deleted=True)
        if job is None:
            return False
        current = JobStatus(job.status)
        if current is JobStatus.PENDING:
            try:
                await transition(session, job_id, JobStatus.CANCELLED, expected={JobStatus.PENDING})
            except InvalidJobTransition as exc:
                current = exc.current  # claimed meanwhile: the dispatcher cancels it below
            else:
                current = None
    if current is None:
        await state.publish_status(user.id, [(job_id, JobStatus.CANCELLED.value)])
        return True
    if current in ACTIVE_STATUSES:
        return await interrupt_running(state, job_id)
    return False


async def interrupt_running(state: IngestState, job_id: uuid.UUID) -> bool:
    """Ask the dispatcher (it marks the job `cancelling` and tells the instance to interrupt ComfyUI)."""
    try:
        return bool(await state.dispatcher.cancel(job_id))
    except NotFound:
        return False  # the job ended and was forgotten meanwhile
    except Exception as exc:  # unreachable, no answer, or an answer the contract does not list
        log.warning("dispatcher did not cancel job %s: %s", job_id, exc, extra={"job_id": str(job_id)})
        raise ServiceUnavailable("The dispatcher did not answer; try again") from exc


async def interrupt(state: IngestState, user: AuthenticatedUser, prompt_id: object) -> None:
    """POST /interrupt: the caller's running jobs, or only `prompt_id` when given (a no-op if it is not
    running, as on ComfyUI)."""
    async with state.database.session() as session:
        active = await JobRepository(session).active_ids(user.id)
    if prompt_id is not None:
        active = [job_id for job_id in active if str(job_id) == prompt_id]
    failures = 0
    for job_id in active:
        try:
            await interrupt_running(state, job_id)
        except ServiceUnavailable:
            failures += 1
    if failures:
        raise ServiceUnavailable("The dispatcher did not answer; try again")


def parse_ids(values: Iterable[object]) -> list[uuid.UUID]:
    """The values that are job ids; anything else cannot name a job and is skipped."""
    ids = []
    for value in values:
        if isinstance(value, str):
            try:
                ids.append(uuid.UUID(value))
            except ValueError:
                continue
    return ids
