"""Submitting a prompt: validate against the fleet's node library, seal partner credentials, store the job,
then tell the sockets and nudge the dispatcher (after the commit, so both see the stored job)."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from comfy_cloud.comfyui.validation import (
    PromptError,
    ValidationResult,
    check_prompt_request,
    file_inputs,
    required_node_classes,
    validate_prompt,
)
from comfy_cloud.secrets import split_secrets
from database.job_states import JobStatus
from database.models import Job
from database.repositories.catalogues import CatalogueReadRepository
from database.repositories.jobs import DuplicateJob, JobRepository, NewJob
from services.ingest.auth.service import AuthenticatedUser
from services.ingest.catalogues import NodeLibrary
from services.ingest.prompts.files import existing_file_values
from services.ingest.state import IngestState

log = logging.getLogger(__name__)


def _reason(kind: str, message: str, details: str) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


# Same answer whoever owns the id, so a foreign id reveals nothing.
def _duplicate(prompt_id: uuid.UUID) -> PromptError:
    return PromptError(
        _reason(
            "duplicate_prompt_id",
            "prompt_id was already submitted",
            f"prompt_id {prompt_id} was already used and cannot run again; omit prompt_id to let the "
            "server generate one",
        )
    )


def _number_error() -> PromptError:
    return PromptError(_reason("invalid_prompt", "number must be a number", "number is out of range"))


@dataclass(frozen=True, slots=True)
class Submitted:
    prompt_id: uuid.UUID
    number: int | float
    node_errors: dict[str, Any]


def check_request(body: Any) -> None:
    """ComfyUI's checks before validation, in its order (raises PromptError)."""
    try:
        check_prompt_request(body)
    except OverflowError:  # float() of an integer beyond the double range
        raise _number_error() from None


async def submit(
    state: IngestState, user: AuthenticatedUser, body: Any, usage_source: str | None
) -> Submitted:
    check_request(body)
    prompt: dict[str, Any] = body["prompt"]
    # One transaction from the catalogue lookup to the insert: a prompt costs one checkout and one
    # commit. A refused prompt rolls it back, having written nothing.
    required = sorted(required_node_classes(prompt))
    async with state.database.session() as session:
        # The live catalogues (for validation) and the catalogues that can run it, in one query.
        routing = await CatalogueReadRepository(session).routing(required)
        library = await state.catalogues.get(session, live=routing.live)
        result = await _validate(session, user, body, library)
        if not library.runnable_on(required):
            _raise_unrunnable(prompt, body, library, required)
        job_id = uuid.UUID(body["prompt_id"]) if body.get("prompt_id") is not None else uuid.uuid4()
        extra_data, secrets = _extra_data(body, usage_source)
        new = NewJob(
            id=job_id,
            user_id=user.id,
            prompt=prompt,
            extra_data=extra_data,
            sealed_secrets=_seal(state, job_id, secrets),
            client_id=body["client_id"] if isinstance(body.get("client_id"), str) else None,
            outputs_to_execute=result.outputs_to_execute,
            required_nodes=required,
            workflow_id=_workflow_id(extra_data),
            number=float(body["number"]) if "number" in body else None,
        )
        # Every catalogue that has all the classes, also of instances away now (they may come back).
        new.runnable_on = routing.runnable
        job = await _store(session, new, front=bool(body.get("front")))
    # After the commit, so both the sockets and the dispatcher find the stored job.
    await state.publish_status(user.id, [(job.id, JobStatus.PENDING.value)])
    await state.dispatcher.nudge()
    # ComfyUI echoes an explicit number as a float (5 -> 5.0) and shows its counter as an integer.
    shown = job.number if "number" in body else _int_if_whole(job.number)
    return Submitted(job.id, shown, result.node_errors)


async def _store(session: AsyncSession, new: NewJob, *, front: bool) -> Job:
    repo = JobRepository(session)
    if new.number is None and front:
        new.number = -float(await repo.next_number())  # ComfyUI: front = -counter
    try:
        return await repo.create(new)
    except DuplicateJob:
        raise _duplicate(new.id) from None


async def _validate(
    session: AsyncSession, user: AuthenticatedUser, body: dict[str, Any], library: NodeLibrary
) -> ValidationResult:
    prompt = body["prompt"]
    # Only the caller's files exist for this prompt: look up what it names before validating.
    named = [value for _, _, value in file_inputs(prompt, library.object_info)]
    existing: set[str] = set()
    if named:
        existing = await existing_file_values(session, user.id, named)
    return validate_prompt(
        prompt,
        library.object_info,
        partial_execution_targets=body.get("partial_execution_targets"),
        file_exists=lambda _class_type, value: value in existing,
    )


def _raise_unrunnable(
    prompt: dict[str, Any], body: dict[str, Any], library: NodeLibrary, required: list[str]
) -> None:
    """The classes exist in the fleet but no single instance offers all of them: answer like ComfyUI
    on the instance that comes closest (missing_node_type for the first class it lacks)."""
    validate_prompt(
        prompt,
        library.best_coverage(required),
        partial_execution_targets=body.get("partial_execution_targets"),
    )
    raise PromptError(
        _reason("missing_node_type", "No instance offers every node of this prompt", ", ".join(required))
    )


def _extra_data(body: dict[str, Any], usage_source: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    extra_data, secrets = split_secrets(dict(body.get("extra_data") or {}))
    if "client_id" in body:
        extra_data["client_id"] = body["client_id"]
    if usage_source and "comfy_usage_source" not in extra_data:
        extra_data["comfy_usage_source"] = usage_source
    extra_data["create_time"] = int(time.time() * 1000)
    return extra_data, secrets


def _seal(state: IngestState, job_id: uuid.UUID, secrets: dict[str, str]) -> bytes | None:
    if not secrets:
        return None
    if state.sealer is None:
        # Never store them in clear; refuse rather than run partner nodes without credentials.
        raise PromptError(
            _reason(
                "server_error",
                "Partner-node credentials cannot be accepted",
                "the server has no SECRET_KEY to seal api_key_comfy_org / auth_token_comfy_org",
            ),
            status=503,
        )
    return state.sealer.seal(job_id, secrets)


def _workflow_id(extra_data: dict[str, Any]) -> str | None:
    pnginfo = extra_data.get("extra_pnginfo")
    workflow = pnginfo.get("workflow") if isinstance(pnginfo, dict) else None
    workflow_id = workflow.get("id") if isinstance(workflow, dict) else None
    return workflow_id if isinstance(workflow_id, str) else None


def _int_if_whole(number: float) -> int | float:
    return int(number) if float(number).is_integer() else number


async def queue_remaining(state: IngestState, user: AuthenticatedUser) -> int:
    async with state.database.session() as session:
        return await JobRepository(session).queue_remaining(user.id)
