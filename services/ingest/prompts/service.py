"""Submitting a prompt: validate against the fleet's node library, seal partner credentials, store the job,
then tell the sockets (after the commit, so they see the stored job; the commit itself wakes the
dispatcher, see database/wakeups.py)."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

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
from database.repositories.broadcast import Notification
from database.repositories.jobs import DuplicateJob, NewJob, Submission, count_queue_remaining, submit_job
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


# A prompt validated against a library that changed before its job was stored is validated again;
# the last attempt stores it unguarded (the fleet changed under it that many times in a row).
MAX_ATTEMPTS = 3


async def submit(
    state: IngestState, user: AuthenticatedUser, body: Any, usage_source: str | None
) -> Submitted:
    check_request(body)
    prompt: dict[str, Any] = body["prompt"]
    required = sorted(required_node_classes(prompt))
    # The cached library: in the steady state a prompt costs one statement, the guarded insert.
    library, result = await _validated(state, user, body, required, state.catalogues.current())
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
    front = bool(body.get("front"))
    # The `pending` status event, sent by the insert itself when the broadcaster allows it.
    notification = state.status_notification(user.id, [(job_id, JobStatus.PENDING.value)])
    number: float | None = None
    for attempt in range(1, MAX_ATTEMPTS + 1):
        expected = library.hashes if attempt < MAX_ATTEMPTS else None
        submission = await _store(state, new, front=front, expected_live=expected, notify=notification)
        number = submission.number
        if number is not None:
            break
        # Not stored: the live catalogues changed since `library`. Validate against them.
        library, result = await _validated(
            state, user, body, required, await state.catalogues.refresh(submission.live)
        )
        new.outputs_to_execute = result.outputs_to_execute
    # After the commit, so the sockets find the stored job. The commit itself woke the dispatcher
    # (database/wakeups.py): no HTTP nudge.
    if notification is None:
        await state.publish_status(user.id, [(job_id, JobStatus.PENDING.value)])
    # ComfyUI echoes an explicit number as a float (5 -> 5.0) and shows its counter as an integer.
    assert number is not None  # the last attempt is unguarded: stored, or refused as a duplicate
    shown = number if "number" in body else _int_if_whole(number)
    return Submitted(job_id, shown, result.node_errors)


async def _store(
    state: IngestState,
    new: NewJob,
    *,
    front: bool,
    expected_live: frozenset[str] | None,
    notify: Notification | None,
) -> Submission:
    try:
        async with state.database.raw() as conn:
            return await submit_job(conn, new, front=front, expected_live=expected_live, notify=notify)
    except DuplicateJob:
        raise _duplicate(new.id) from None


async def _validated(
    state: IngestState, user: AuthenticatedUser, body: dict[str, Any], required: list[str],
    library: NodeLibrary,
) -> tuple[NodeLibrary, ValidationResult]:  # fmt: skip
    """Validate against `library`, which may be stale: a refusal stands only against the live
    catalogues, so a refused prompt is validated again against a refreshed library if it differs."""
    try:
        return library, await _validate(state, user, body, library, required)
    except PromptError:
        fresh = await state.catalogues.refresh()
        if fresh.hashes == library.hashes:
            raise
        return fresh, await _validate(state, user, body, fresh, required)


async def _validate(
    state: IngestState,
    user: AuthenticatedUser,
    body: dict[str, Any],
    library: NodeLibrary,
    required: list[str],
) -> ValidationResult:
    """Validate against `library`, and refuse a prompt that no single catalogue of it can run."""
    prompt = body["prompt"]
    # Only the caller's files exist for this prompt: look up what it names before validating.
    named = [value for _, _, value in file_inputs(prompt, library.object_info)]
    existing: set[str] = set()
    if named:
        async with state.database.autocommit() as session:
            existing = await existing_file_values(session, user.id, named)
    result = validate_prompt(
        prompt,
        library.object_info,
        partial_execution_targets=body.get("partial_execution_targets"),
        file_exists=lambda _class_type, value: value in existing,
    )
    if not library.runnable_on(required):
        _raise_unrunnable(prompt, body, library, required)
    return result


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
    async with state.database.raw() as conn:
        return await count_queue_remaining(conn, user.id)
