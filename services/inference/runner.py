"""One job on this instance, from hand-off to report.

1. Load the job (it must be assigned to this instance) and unseal its partner credentials into the
   `extra_data` sent to ComfyUI (never logged, never stored in clear).
2. Materialize its input files in ComfyUI and rewrite the prompt to their names.
3. Subscribe to the job's messages, then submit with the job id as `prompt_id` and our client id.
4. Follow it to its end (tracking.Tracker), relaying every event; move it to in_progress when ComfyUI
   starts it.
5. Report: outputs stored, history and final status in one guarded transaction (reporting.Reporter).
Interrupts (cancel, timeout) and "this job is no longer yours" arrive from other tasks via RunControl.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from comfy_cloud.broadcast import Broadcaster
from comfy_cloud.logging import job_context
from comfy_cloud.secrets import Sealer
from comfy_cloud.storage import Storage
from database.engine import Database
from database.job_states import ACTIVE_STATUSES, JobStatus
from database.repositories.job_runs import JobRun, load_job
from services.inference.catalogue import Catalogue
from services.inference.comfyui.client import (
    ComfyUIClient,
    ComfyUIUnavailable,
    PromptIdIgnored,
    PromptRejected,
)
from services.inference.comfyui.remote_state import Remote, read_state
from services.inference.comfyui.socket import SocketFollower
from services.inference.config import InferenceSettings
from services.inference.inputs import Materialized, MissingInput, materialize
from services.inference.outputs import OutputStore, RetryPolicy
from services.inference.relay import EventRelay, Redactor
from services.inference.reporting import (
    TIMEOUT_ERROR,
    LateReport,
    Reporter,
    error_payload,
)
from services.inference.tracking import Outcome, OutcomeKind, RunControl, Tracker, TrackerDeps, now_ms

log = logging.getLogger(__name__)


class Phase(StrEnum):
    PREPARING = "preparing"  # loading, unsealing, materializing inputs
    RUNNING = "running"  # submitted to ComfyUI
    REPORTING = "reporting"
    DONE = "done"


@dataclass(slots=True)
class RunnerDeps:
    settings: InferenceSettings
    db: Database
    storage: Storage
    broadcaster: Broadcaster
    comfy: ComfyUIClient
    follower: SocketFollower
    catalogue: Catalogue
    client_id: str  # ours, as the follower connects with it
    sealer: Sealer | None = None


class JobRunner:
    def __init__(
        self, deps: RunnerDeps, job_id: uuid.UUID, attempt: int, *, loaded: JobRun | None = None
    ) -> None:
        self.deps = deps
        self.job_id = job_id
        self.attempt = attempt
        self._loaded = loaded  # the job as the hand-off check just read it (else read at start)
        self.prompt_id = str(job_id)
        self.phase = Phase.PREPARING
        self.control = RunControl(deps.comfy, self.prompt_id)
        self.outcome: Outcome | None = None
        self.reporter: Reporter | None = None

    # -- requests from other tasks -----------------------------------------------------------------

    async def interrupt(self, reason: str) -> bool:
        """Cancel or time out the job; False once it is past the point where that matters."""
        if self.phase in (Phase.REPORTING, Phase.DONE):
            return False
        if self.control.reason is not None:
            return True  # already asked (heartbeats repeat `cancelling` until the job ends)
        await self.control.interrupt(reason)
        return True

    def lost(self) -> None:
        """The dispatcher no longer counts this job as ours (lease lost): stop without reporting."""
        if self.phase in (Phase.PREPARING, Phase.RUNNING):
            self.control.mark_lost()

    def comfyui_died(self) -> None:
        if self.phase is Phase.RUNNING:
            self.control.mark_comfyui_died()

    def stop(self) -> None:
        """The instance shuts down: interrupt the job in ComfyUI and give it back to the queue."""
        if self.phase in (Phase.PREPARING, Phase.RUNNING):
            self.control.mark_stopping()

    # -- the run -----------------------------------------------------------------------------------

    async def run(self) -> None:
        with job_context(self.job_id):
            try:
                await self._run()
            except LateReport as exc:
                log.warning("report refused: %s", exc)
            except Exception:
                log.exception("the job failed inside the inference instance")
                await self._give_back_after_crash()
            finally:
                self.deps.follower.unsubscribe(self.prompt_id)
                self.phase = Phase.DONE

    async def _run(self) -> None:
        job = await self._load()
        secrets = self._unseal(job)
        relay = EventRelay(
            self.deps.broadcaster,
            user_id=str(job.user_id),
            job_id=self.prompt_id,
            redact=Redactor(list(secrets.values())),
        )
        reporter = self.reporter = self._reporter(job, relay)
        if self.control.lost:
            return
        if job.status is JobStatus.CANCELLING or self.control.reason:
            await self._end_unstarted(reporter, self.control.reason or "cancel")
            return
        await self._prepare_and_run(job, secrets, relay, reporter)

    async def _prepare_and_run(
        self, job: JobRun, secrets: dict[str, str], relay: EventRelay, reporter: Reporter
    ) -> None:
        inputs = await self._materialize(job, reporter)
        if inputs is None or not await self._still_wanted(reporter):
            return
        outputs = self._output_store(job, inputs)
        extra_data = {**job.extra_data, **secrets}
        outcome = self.outcome = await self._submit_and_follow(job, inputs.prompt, extra_data, relay, outputs)
        if outcome is None:
            return
        self.phase = Phase.REPORTING
        if outcome.kind is OutcomeKind.ABANDONED or self.control.stopping:
            await self.control.cancel_in_comfyui()  # free the GPU for the job's next run
        await reporter.report(outcome, reason=self.control.reason, outputs=outputs)

    async def _materialize(self, job: JobRun, reporter: Reporter) -> Materialized | None:
        """The prompt with its inputs in ComfyUI; None when the job ended instead."""
        deps = self.deps
        try:
            return await materialize(
                prompt=job.prompt,
                object_info=await deps.catalogue.object_info(),
                user_id=job.user_id,
                job_id=job.id,
                db=deps.db,
                storage=deps.storage,
                comfy=deps.comfy,
            )
        except MissingInput as exc:
            log.info("missing input: %s", exc)
            payload = error_payload(
                self.prompt_id,
                message=str(exc),
                exception_type="MissingInput",
                node_id=exc.node_id,
                node_type=exc.node_type,
            )
            error = {"type": "missing_input", "message": str(exc), "node_id": exc.node_id}
            await reporter.end_before_run(JobStatus.ERROR, error, "execution_error", payload)
        except ComfyUIUnavailable as exc:
            await reporter.give_back(f"ComfyUI unavailable while preparing the job: {exc}")
        return None

    async def _still_wanted(self, reporter: Reporter) -> bool:
        """Requests that arrived while the inputs were being prepared end the job before it runs."""
        if self.control.lost:
            return False
        if self.control.stopping:
            await reporter.give_back("the inference instance is stopping")
            return False
        if self.control.reason:
            await self._end_unstarted(reporter, self.control.reason)
            return False
        return True

    def _output_store(self, job: JobRun, inputs: Materialized) -> OutputStore:
        s = self.deps.settings
        return OutputStore(
            comfy=self.deps.comfy,
            storage=self.deps.storage,
            db=self.deps.db,
            job_id=job.id,
            user_id=job.user_id,
            policy=RetryPolicy(s.upload_attempts, s.upload_backoff, s.upload_concurrency),
            inputs=inputs.uploaded,
        )

    async def _submit_and_follow(
        self,
        job: JobRun,
        prompt: dict[str, Any],
        extra_data: dict[str, Any],
        relay: EventRelay,
        outputs: OutputStore,
    ) -> Outcome | None:
        deps = self.deps
        inbox = deps.follower.subscribe(self.prompt_id)  # before submitting: no message can be missed
        self.control.attach(inbox)
        refused = await self._submit(prompt, extra_data)
        if refused is not True:
            return refused
        log.info("submitted to ComfyUI")
        self.phase = Phase.RUNNING
        self.control.submitted = True
        if self.control.reason:  # asked while we were submitting
            await self.control.interrupt(self.control.reason)
        tracker = Tracker(
            TrackerDeps(deps.comfy, deps.follower, deps.settings),
            prompt_id=self.prompt_id,
            inbox=inbox,
            relay=relay,
            outputs=outputs,
            control=self.control,
            on_started=self._started,
            deadline=_monotonic_deadline(job.execution_deadline_at),
        )
        return await tracker.run()

    async def _submit(self, prompt: dict[str, Any], extra_data: dict[str, Any]) -> Outcome | bool | None:
        """True once ComfyUI has the prompt; None when ComfyUI refused it (the job is ended here);
        a VANISHED outcome when ComfyUI could not be reached."""
        deps, reporter = self.deps, self.reporter
        assert reporter is not None
        try:
            await deps.comfy.submit(
                prompt, prompt_id=self.prompt_id, client_id=deps.client_id, extra_data=extra_data
            )
        except PromptRejected as exc:
            await self._rejected(reporter, exc)
            return None
        except PromptIdIgnored as exc:
            payload = error_payload(self.prompt_id, message=str(exc), exception_type="UnsupportedComfyUI")
            error = {"type": "unsupported_comfyui", "message": f"{exc}; ComfyUI 0.3.45 or later is needed"}
            await reporter.end_before_run(JobStatus.ERROR, error, "execution_error", payload)
            return None
        except ComfyUIUnavailable as exc:
            if not await self._queued_anyway():
                return Outcome(OutcomeKind.VANISHED, detail=f"ComfyUI did not take the prompt: {exc}")
        return True

    async def _queued_anyway(self) -> bool:
        """After a failed submit: did ComfyUI take the prompt before the connection broke?"""
        try:
            state = await read_state(self.deps.comfy, self.prompt_id)
        except ComfyUIUnavailable:
            return False
        return state.status is not Remote.UNKNOWN

    async def _started(self) -> None:
        assert self.reporter is not None
        status = await self.reporter.mark_started()
        if status is None:
            log.warning("the job was taken from this instance while it ran")
            self.control.mark_lost()
        elif status is JobStatus.CANCELLING:
            await self.control.interrupt("cancel")

    # -- endings without a run ---------------------------------------------------------------------

    async def _end_unstarted(self, reporter: Reporter, reason: str) -> None:
        payload = {
            "prompt_id": self.prompt_id,
            "node_id": None,
            "node_type": None,
            "executed": [],
            "timestamp": now_ms(),
        }
        if reason == "timeout":
            await reporter.end_before_run(JobStatus.TIMEOUT, TIMEOUT_ERROR, "execution_interrupted", payload)
        else:
            await reporter.end_before_run(JobStatus.CANCELLED, None, "execution_interrupted", payload)

    async def _rejected(self, reporter: Reporter, exc: PromptRejected) -> None:
        error = exc.error
        details = str(error.get("details") or "")
        message = str(error.get("message") or "Prompt rejected") + (f": {details}" if details else "")
        node_id = next(iter(exc.node_errors), None)
        node_type = (exc.node_errors.get(node_id) or {}).get("class_type") if node_id else None
        log.info("ComfyUI rejected the prompt: %s", message)
        payload = error_payload(
            self.prompt_id,
            message=message,
            exception_type=str(error.get("type") or "invalid_prompt"),
            node_id=node_id,
            node_type=node_type,
        )
        job_error = {
            "type": "prompt_rejected",
            "message": message,
            "error": error,
            "node_errors": exc.node_errors,
        }
        await reporter.end_before_run(JobStatus.ERROR, job_error, "execution_error", payload)

    async def _give_back_after_crash(self) -> None:
        if self.reporter is None or self.reporter.final is not None or self.control.lost:
            return
        try:
            await self.reporter.give_back("internal error of the inference instance")
        except LateReport:
            pass
        except Exception:
            log.exception("could not give the job back; its lease will expire")

    # -- loading -----------------------------------------------------------------------------------

    async def _load(self) -> JobRun:
        if self._loaded is not None:
            loaded, self._loaded = self._loaded, None
            return loaded
        async with self.deps.db.raw() as conn:
            job = await load_job(conn, self.job_id)
        if (
            job is None
            or job.instance_id != self.deps.settings.instance_id
            or job.status not in ACTIVE_STATUSES
        ):
            raise LateReport("the job is not assigned to this instance")
        return job

    def _unseal(self, job: JobRun) -> dict[str, str]:
        if not job.sealed_secrets:
            return {}
        if self.deps.sealer is None:
            # Run without them: a partner node then fails with its own "not signed in" error.
            log.error("the job carries sealed credentials but SECRET_KEY is not set")
            return {}
        try:
            return self.deps.sealer.unseal(job.id, job.sealed_secrets)
        except Exception:  # wrong key or tampered blob; the message must not include the blob
            log.error("the job's credentials could not be unsealed (SECRET_KEY differs from ingest's?)")
            return {}

    def _reporter(self, job: JobRun, relay: EventRelay) -> Reporter:
        return Reporter(
            db=self.deps.db,
            relay=relay,
            job=job,
            instance_id=self.deps.settings.instance_id,
            redact=relay.redact,
        )


def _monotonic_deadline(deadline: datetime | None) -> float | None:
    if deadline is None:
        return None
    return time.monotonic() + (deadline - datetime.now(UTC)).total_seconds()
