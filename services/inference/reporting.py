"""The job's record: its status changes, history entry and outputs, then the news of them.

The final status change carries this instance's id as a guard and commits atomically with the
history and output rows: either the job ends with its whole record, or (the lease was lost and the
job re-queued or taken by another instance) nothing is written and the report is refused. Only after
the commit are the closing events and `cc.job_status` published (the commit itself wakes the
dispatcher when jobs wait: database/wakeups.py).
The usual end is one statement (`results.report`); when its status change is refused, a session
transaction works out why (a pending cancel, a job the dispatcher ended, or a late report).

Outcome -> status: success -> completed (error if an output could not be stored); execution_error ->
error; interrupted -> cancelled (cancel), timeout (deadline), error (interrupted by someone else);
vanished -> pending while attempts remain (the dispatcher runs it again), else error.
A job the dispatcher already ended (timeout, cancelled) while it still names this instance keeps that
status but gets the history of what ComfyUI did.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from comfy_cloud.comfyui.jobs import output_media_types
from database.engine import Database
from database.job_states import (
    ACTIVE_STATUSES,
    InvalidJobTransition,
    JobStatus,
    guarded_transition,
    transition,
)
from database.repositories import results
from database.repositories.broadcast import Notification
from database.repositories.job_runs import JobRun, load_job
from database.repositories.jobs import JobRepository
from database.repositories.results import JobRecord, ResultRepository
from services.inference.comfyui.socket import Message
from services.inference.names import FileRef
from services.inference.outputs import OutputStore
from services.inference.relay import EventRelay, Redactor
from services.inference.tracking import Outcome, OutcomeKind, now_ms

log = logging.getLogger(__name__)

TIMEOUT_ERROR = {
    "type": "execution_timeout",
    "message": "The job ran past its execution deadline and was interrupted.",
}


class LateReport(Exception):
    """The job is no longer this instance's; what it would report is refused."""


def error_payload(
    prompt_id: str,
    *,
    message: str,
    exception_type: str,
    node_id: str | None = None,
    node_type: str | None = None,
) -> dict[str, Any]:
    """An `execution_error` message of ComfyUI's shape, for failures ComfyUI did not report itself."""
    return {
        "prompt_id": prompt_id,
        "node_id": node_id,
        "node_type": node_type,
        "executed": [],
        "exception_message": message,
        "exception_type": exception_type,
        "traceback": [],
        "current_inputs": {},
        "current_outputs": [],
        "timestamp": now_ms(),
    }


def failed_history(messages: list[list[Any]]) -> JobRecord:
    status = {"status_str": "error", "completed": False, "messages": messages}
    return JobRecord(outputs={}, status=status, meta={}, output_types=[], items=[])


def closing_events(prompt_id: str, terminal: str, payload: dict[str, Any]) -> list[Message]:
    return [Message(terminal, payload), Message("executing", {"node": None, "prompt_id": prompt_id})]


def _job_error(payload: dict[str, Any]) -> dict[str, Any]:
    """jobs.error for a ComfyUI `execution_error` (the whole payload stays in history)."""
    return {
        "type": "execution_error",
        "message": str(payload.get("exception_message") or "").strip() or "The workflow failed.",
        "node_id": payload.get("node_id"),
        "node_type": payload.get("node_type"),
        "exception_type": payload.get("exception_type"),
    }


class Reporter:
    def __init__(
        self,
        *,
        db: Database,
        relay: EventRelay,
        job: JobRun,
        instance_id: uuid.UUID,
        redact: Redactor,
    ) -> None:
        self._db = db
        self._relay = relay
        self._job = job
        self._instance_id = instance_id
        self._redact = redact
        self.started = False
        self.final: JobStatus | None = None

    # -- start -------------------------------------------------------------------------------------

    async def mark_started(self) -> JobStatus | None:
        """assigned -> in_progress once ComfyUI runs the job. Returns the job's status (cancelling:
        interrupt it), or None when the job is no longer this instance's."""
        # One conditional UPDATE (and reads only if it is refused), straight through asyncpg. It runs
        # beside the relay (Tracker._started_once); the report waits for it.
        async with self._db.raw() as conn:
            try:
                await guarded_transition(
                    conn,
                    self._job.id,
                    JobStatus.IN_PROGRESS,
                    expected={JobStatus.ASSIGNED},
                    instance_id=self._instance_id,
                )
            except InvalidJobTransition:
                return await self._holding_status(conn)
        self.started = True
        self._relay.add_status(JobStatus.IN_PROGRESS.value)
        return JobStatus.IN_PROGRESS

    async def _to_in_progress(self, session: AsyncSession) -> None:
        await transition(
            session,
            self._job.id,
            JobStatus.IN_PROGRESS,
            expected={JobStatus.ASSIGNED},
            instance_id=self._instance_id,
        )

    async def _holding_status(self, conn: asyncpg.Connection) -> JobStatus | None:
        job = await load_job(conn, self._job.id)
        if job is None or job.instance_id != self._instance_id or job.status not in ACTIVE_STATUSES:
            return None
        self.started = self.started or job.status is JobStatus.IN_PROGRESS
        return job.status

    # -- the end -----------------------------------------------------------------------------------

    async def report(self, outcome: Outcome, *, reason: str | None, outputs: OutputStore) -> None:
        if outcome.kind is OutcomeKind.ABANDONED:
            log.info("job abandoned: %s", outcome.detail)
            return
        if outcome.kind is OutcomeKind.VANISHED:
            await self.give_back(outcome.detail)
            return
        entry = outcome.history or {}
        raw_outputs = entry.get("outputs") or {}
        await outputs.store(raw_outputs)  # anything the `executed` events did not bring
        status = dict(entry.get("status") or {"status_str": "error", "completed": False, "messages": []})
        closing = list(outcome.closing)
        target, error = self._target(outcome, reason)
        failed = outputs.failed_in(raw_outputs)
        if target is JobStatus.COMPLETED and failed:
            target, error = JobStatus.ERROR, self._storage_failure(failed, status, closing)
        visible_outputs = outputs.rewrite(raw_outputs)
        history = JobRecord(
            outputs=visible_outputs,
            status=self._redact(status),
            meta=entry.get("meta") or {},
            output_types=sorted(output_media_types(visible_outputs)),
            items=outputs.records(raw_outputs),
        )
        await self._end(target, error, history, closing)

    def _target(self, outcome: Outcome, reason: str | None) -> tuple[JobStatus, dict[str, Any] | None]:
        if outcome.kind is OutcomeKind.SUCCESS:
            return JobStatus.COMPLETED, None
        if outcome.kind is OutcomeKind.ERROR:
            payload = outcome.closing[0].data if outcome.closing else {}
            return JobStatus.ERROR, self._redact(_job_error(payload))
        if reason == "timeout":
            return JobStatus.TIMEOUT, TIMEOUT_ERROR
        if reason == "cancel":
            return JobStatus.CANCELLED, None
        # Interrupted by someone else (ComfyUI's own UI or API); a pending cancel still wins below.
        return JobStatus.ERROR, {"type": "interrupted", "message": "The job was interrupted on its worker."}

    def _storage_failure(
        self, failed: list[FileRef], status: dict[str, Any], closing: list[Message]
    ) -> dict[str, Any]:
        """Turn a success whose outputs could not all be stored into a failure, everywhere."""
        names = ", ".join(ref.filename for ref in failed)
        message = f"Some outputs could not be stored: {names}"
        payload = error_payload(str(self._job.id), message=message, exception_type="OutputStorageError")
        status.update(status_str="error", completed=False)
        status["messages"] = [m for m in status.get("messages") or [] if m[0] != "execution_success"]
        status["messages"].append(["execution_error", payload])
        if closing:
            closing[0] = Message("execution_error", payload)
        return {"type": "output_storage_failed", "message": message}

    async def give_back(self, detail: str) -> None:
        """ComfyUI lost the job: back to the queue while attempts remain, else an error."""
        job = self._job
        if job.attempts < job.max_attempts:
            final = await self._end(JobStatus.PENDING, None, None, [])
        else:
            message = f"The job's worker failed {job.attempts} times; giving up. Last: {detail}"
            payload = error_payload(str(job.id), message=message, exception_type="WorkerLost")
            history = failed_history([["execution_error", payload]])
            error = {"type": "worker_lost", "message": message}
            final = await self._end(
                JobStatus.ERROR, error, history, closing_events(str(job.id), "execution_error", payload)
            )
        log.warning("job given back as %s: %s", final.value, detail)

    async def end_before_run(
        self, target: JobStatus, error: dict[str, Any] | None, terminal: str, payload: dict[str, Any]
    ) -> None:
        """End a job ComfyUI never ran (missing input, rejected prompt, cancelled early)."""
        history = failed_history([[terminal, self._redact(payload)]])
        await self._end(target, error, history, closing_events(str(self._job.id), terminal, payload))

    # -- the transaction ---------------------------------------------------------------------------

    async def _end(
        self,
        target: JobStatus,
        error: dict[str, Any] | None,
        history: JobRecord | None,
        closing: list[Message],
    ) -> JobStatus:
        """Commit the job's end, then announce it: the closing messages and its `cc.job_status`. The
        usual end is one statement that writes the record and sends those events with its commit;
        otherwise the careful transaction, then the events of the status it made."""
        notification = None
        if history is not None:  # only `report` can send them
            notification = self._relay.closing_notification(closing, target.value, self._db.url)
        final = await self._commit_directly(target, error, history, notification)
        if final is not None and notification is not None:
            self._relay.sent_inline(notification)
        else:
            if final is None:
                final = await self._commit_carefully(target, error, history)
            await self._announce(final, closing)  # after what is still buffered
        self.final = final
        return final

    async def _commit_directly(
        self,
        target: JobStatus,
        error: dict[str, Any] | None,
        history: JobRecord | None,
        notification: Notification | None = None,
    ) -> JobStatus | None:
        """The usual end, in one statement (sending `notification` if it moves the job); None when the
        status change was refused (nothing was written) or when the job must first be moved to
        in_progress."""
        if target is JobStatus.COMPLETED and not self.started:
            return None
        job, me = self._job, self._instance_id
        async with self._db.raw() as conn:
            if history is None:
                try:
                    moved = await guarded_transition(conn, job.id, target, instance_id=me, error=error)
                except InvalidJobTransition:
                    return None
                return moved.status
            return await results.report(
                conn,
                job_id=job.id,
                user_id=job.user_id,
                instance_id=me,
                target=target,
                error=error,
                record=history,
                notify=notification,
            )

    async def _commit_carefully(
        self, target: JobStatus, error: dict[str, Any] | None, history: JobRecord | None
    ) -> JobStatus:
        """The end when the direct one does not apply: in one transaction, the record, then the
        status change with its fallbacks (see _transition)."""
        async with self._db.session() as session:
            # The record first, the guarded status change last: a refused report (LateReport) rolls
            # back the record with it all the same, and the status change (whose trigger locks the
            # owner's row in `users`, which every claim and report of that user needs) holds that
            # lock only until the commit right after it, not through the record's statements.
            if history is not None:
                await self._write_history(session, history)
            if target is JobStatus.COMPLETED and not self.started:
                # ComfyUI ran it but we never saw it start (lost socket): assigned -> in_progress first.
                with contextlib.suppress(InvalidJobTransition):
                    await self._to_in_progress(session)
            return await self._transition(session, target, error)

    async def _transition(
        self, session: AsyncSession, target: JobStatus, error: dict[str, Any] | None
    ) -> JobStatus:
        job_id, me = self._job.id, self._instance_id
        try:
            return (await transition(session, job_id, target, instance_id=me, error=error)).status
        except InvalidJobTransition as exc:
            current = exc.current
        if current is JobStatus.CANCELLING and target is not JobStatus.COMPLETED:
            # A cancel was pending: whatever stopped the job, the owner asked for cancelled.
            return (await transition(session, job_id, JobStatus.CANCELLED, instance_id=me)).status
        job = await JobRepository(session).get_unscoped(job_id)
        ended_by_dispatcher = current in (JobStatus.TIMEOUT, JobStatus.CANCELLED)
        if (
            ended_by_dispatcher
            and target is not JobStatus.COMPLETED
            and job is not None
            and job.instance_id == me
        ):
            assert current is not None
            return current
        raise LateReport(f"job is {current.value if current else 'gone'}; not moving it to {target.value}")

    async def _write_history(self, session: AsyncSession, history: JobRecord) -> None:
        repository = ResultRepository(session)
        job = self._job
        for item in history.items:
            await repository.record_output(
                job_id=job.id,
                user_id=job.user_id,
                node_id=item.node_id,
                output_key=item.output_key,
                index=item.index,
                item=item.item,
                file_id=item.file_id,
            )
        await repository.save_history(
            job_id=job.id,
            user_id=job.user_id,
            outputs=history.outputs,
            status=history.status,
            meta=history.meta,
            output_types=history.output_types,
        )

    async def _announce(self, final: JobStatus, closing: list[Message]) -> None:
        for message in closing:
            self._relay.add_message(message)
        self._relay.add_status(final.value)
        await self._relay.flush()
