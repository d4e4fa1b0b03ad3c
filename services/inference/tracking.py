"""Following one submitted prompt to its end, whatever happens to the socket.

The tracker reads the job's inbox (its ComfyUI messages and the socket's signals), relays every
message as it comes (an `executed` only once its files are stored, so its names already work), and
returns how the run ended. The end is found by the socket (`execution_success|error|interrupted`) or,
when the socket missed it, over HTTP (`remote_state`): after every reconnect, every `poll_interval`
while the socket is down, and after `silence_timeout` without a message. Events the socket missed are
rebuilt from the history entry (`executed` per output node, the terminal message), so the owner's
stream always ends with a terminal message and `executing {node: null}`.

"Not found" is never final on one reading: ComfyUI must forget the prompt on two readings
UNKNOWN_RECHECK apart (a restart loses queue and history) before the run counts as vanished.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from services.inference.comfyui.client import ComfyUIClient, ComfyUIError, ComfyUIUnavailable
from services.inference.comfyui.remote_state import Remote, read_state
from services.inference.comfyui.socket import Item, Message, Signal, SocketFollower
from services.inference.config import InferenceSettings
from services.inference.outputs import OutputStore
from services.inference.relay import EventRelay

log = logging.getLogger(__name__)

TERMINAL = ("execution_success", "execution_error", "execution_interrupted")
# Timestamped messages ComfyUI keeps in history `status.messages`.
STATUS_MESSAGES = ("execution_start", "execution_cached", *TERMINAL)
UNKNOWN_RECHECK = 1.0
_FLUSH_EVERY = 64  # events; under a steady stream, publish at least this often


class OutcomeKind(StrEnum):
    SUCCESS = "success"
    ERROR = "error"  # execution_error
    INTERRUPTED = "interrupted"  # execution_interrupted, or an interrupt ComfyUI never confirmed
    VANISHED = "vanished"  # ComfyUI lost the prompt (restart) or stayed unreachable
    ABANDONED = "abandoned"  # the job is no longer this instance's: report nothing


_KIND_OF = {
    "execution_success": OutcomeKind.SUCCESS,
    "execution_error": OutcomeKind.ERROR,
    "execution_interrupted": OutcomeKind.INTERRUPTED,
}


@dataclass(slots=True)
class Outcome:
    kind: OutcomeKind
    history: dict[str, Any] | None = None  # ComfyUI's history entry (ComfyUI's names)
    # The terminal message, what followed it, and `executing {node: null}`: sent after the report.
    closing: list[Message] = field(default_factory=list)
    detail: str = ""


def now_ms() -> int:
    return int(time.time() * 1000)


class RunControl:
    """What other tasks tell a running job: interrupt it, it is lost, ComfyUI died."""

    def __init__(self, comfy: ComfyUIClient, prompt_id: str) -> None:
        self._comfy = comfy
        self._prompt_id = prompt_id
        self._inbox: asyncio.Queue[Item] | None = None
        self.reason: str | None = None  # "cancel" | "timeout"
        self.requested_at: float | None = None
        self.submitted = False
        self.lost = False
        self.comfyui_died = False
        self.stopping = False  # the instance shuts down: give the job back

    def attach(self, inbox: asyncio.Queue[Item]) -> None:
        self._inbox = inbox

    def wake(self) -> None:
        if self._inbox is not None:
            self._inbox.put_nowait(Signal.WAKE)

    async def interrupt(self, reason: str) -> None:
        """Ask ComfyUI to stop the prompt; the first reason given is the one reported."""
        if self.reason is None:
            self.reason = reason
            self.requested_at = time.monotonic()
        if self.submitted:
            await self.cancel_in_comfyui()
        self.wake()

    async def cancel_in_comfyui(self) -> None:
        try:
            await self._comfy.cancel(self._prompt_id)
        except ComfyUIError as exc:
            # The grace period still ends the job; a lost ComfyUI has lost the prompt anyway.
            log.warning("interrupt not delivered to ComfyUI: %s", exc)

    def mark_lost(self) -> None:
        self.lost = True
        self.wake()

    def mark_comfyui_died(self) -> None:
        self.comfyui_died = True
        self.wake()

    def mark_stopping(self) -> None:
        self.stopping = True
        self.wake()


class HistoryDraft:
    """A history entry pieced together from the socket, for when ComfyUI cannot give its own."""

    def __init__(self, prompt_id: str) -> None:
        self.prompt_id = prompt_id
        self.outputs: dict[str, Any] = {}
        self.meta: dict[str, Any] = {}
        self.messages: list[list[Any]] = []

    def note(self, message: Message) -> None:
        if message.type in STATUS_MESSAGES:
            self.messages.append([message.type, message.data])
        elif message.type == "executed":
            node = str(message.data.get("node"))
            self.outputs[node] = message.data.get("output") or {}
            display = message.data.get("display_node") or node
            self.meta[node] = {
                "node_id": node,
                "display_node": display,
                "parent_node": None,
                "real_node_id": node,
            }

    def entry(self, terminal: str) -> dict[str, Any]:
        success = terminal == "execution_success"
        status = {
            "status_str": "success" if success else "error",
            "completed": success,
            "messages": self.messages,
        }
        return {"outputs": self.outputs, "status": status, "meta": self.meta}


@dataclass(slots=True)
class TrackerDeps:
    comfy: ComfyUIClient
    follower: SocketFollower
    settings: InferenceSettings


class Tracker:
    def __init__(
        self,
        deps: TrackerDeps,
        *,
        prompt_id: str,
        inbox: asyncio.Queue[Item],
        relay: EventRelay,
        outputs: OutputStore,
        control: RunControl,
        on_started: Callable[[], Awaitable[None]],
        deadline: float | None = None,
    ) -> None:
        self._deps = deps
        self._settings = deps.settings
        self.prompt_id = prompt_id
        self._inbox = inbox
        self._relay = relay
        self._outputs = outputs
        self._control = control
        self._on_started = on_started
        self._deadline = deadline  # monotonic; the job's execution deadline
        self.draft = HistoryDraft(prompt_id)
        self._relayed_nodes: set[str] = set()
        self._connected = deps.follower.connected.is_set()
        now = time.monotonic()
        self._last_message = now
        self._last_check = now
        self._last_contact = now
        self._unknown_since: float | None = None
        self._starting: asyncio.Future[None] | None = None

    # -- the loop ----------------------------------------------------------------------------------

    async def run(self) -> Outcome:
        try:
            outcome = await self._follow()
        except BaseException:
            if self._starting is not None:
                self._starting.cancel()
            raise
        if self._starting is not None:
            await self._starting  # the report needs to know whether the job moved to in_progress
        return outcome

    async def _follow(self) -> Outcome:
        while True:
            outcome = await self._control_outcome()
            if outcome is not None:
                return outcome
            item = await self._next()
            if item is None:
                outcome = await self._check()
            elif isinstance(item, Signal):
                outcome = await self._on_signal(item)
            else:
                outcome = await self._on_message(item)
            if outcome is not None:
                return outcome

    async def _control_outcome(self) -> Outcome | None:
        control, now = self._control, time.monotonic()
        if control.lost:
            return Outcome(OutcomeKind.ABANDONED, detail="the job is no longer this instance's")
        if control.comfyui_died:
            return Outcome(OutcomeKind.VANISHED, detail="the ComfyUI process died while running the job")
        if control.stopping:
            return Outcome(OutcomeKind.VANISHED, detail="the inference instance is stopping")
        if control.requested_at is not None and now - control.requested_at >= self._settings.interrupt_grace:
            return self._unconfirmed_interrupt()
        if self._deadline is not None and now >= self._deadline and control.reason is None:
            log.info("execution deadline passed: interrupting")
            await control.interrupt("timeout")
        return None

    async def _next(self) -> Item | None:
        """The next inbox item, or None when it is time to ask ComfyUI over HTTP."""
        try:
            item = self._inbox.get_nowait()
        except asyncio.QueueEmpty:
            await self._relay.flush()  # caught up: publish what is buffered
            try:
                # Not wait_for: on Python 3.11 it wraps the wait in a task of its own, per message.
                async with asyncio.timeout(self._timeout()):
                    return await self._inbox.get()
            except TimeoutError:
                return None
        if self._relay.buffered >= _FLUSH_EVERY:
            await self._relay.flush()
        return item

    def _timeout(self) -> float:
        now, s = time.monotonic(), self._settings
        if self._connected:  # a check after silence_timeout without news, then again after as long
            due = [max(self._last_message, self._last_check) + s.silence_timeout]
        else:
            due = [self._last_check + s.poll_interval]
        if self._unknown_since is not None:
            due.append(self._unknown_since + UNKNOWN_RECHECK)
        if self._control.requested_at is not None:
            due.append(self._control.requested_at + s.interrupt_grace)
        if self._deadline is not None and self._control.reason is None:
            due.append(self._deadline)
        return max(0.01, min(due) - now)

    # -- inputs ------------------------------------------------------------------------------------

    async def _on_signal(self, signal: Signal) -> Outcome | None:
        if signal is Signal.CONNECTED:
            self._connected = True
            return await self._check()  # what happened while no socket listened
        if signal is Signal.DISCONNECTED:
            self._connected = False
            self._last_check = time.monotonic()
        return None

    async def _on_message(self, message: Message) -> Outcome | None:
        self._last_message = time.monotonic()
        self._unknown_since = None
        if message.type in TERMINAL:
            return await self._conclude(message)
        if message.type == "executing" and message.data.get("node") is None:
            # The closing message without its terminal one: the terminal was lost; ask history.
            return await self._check(closing=message)
        self._started_once()
        self.draft.note(message)
        if message.type == "executed":
            await self._relay_executed(message.data)
        else:
            self._relay.add_message(message)
        return None

    def _started_once(self) -> None:
        # Not awaited: the job's next messages need not wait for the status change's round trip.
        # run() waits for it before it returns.
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._on_started())

    async def _relay_executed(self, data: dict[str, Any]) -> None:
        node = str(data.get("node"))
        outputs = {node: data.get("output") or {}}  # node-keyed, as in history
        # Storing may take a while: earlier events go out meanwhile, and before this one.
        flushing = asyncio.ensure_future(self._relay.flush())
        try:
            await self._outputs.store(outputs)
        finally:
            await flushing
        self._relay.add("executed", {**data, "output": self._outputs.rewrite(outputs)[node]})
        self._relayed_nodes.add(node)

    # -- the end -----------------------------------------------------------------------------------

    async def _conclude(self, terminal: Message) -> Outcome:
        self._started_once()
        self.draft.note(terminal)
        tail = await self._closing_messages()
        entry = await self._history_after_end() or self.draft.entry(terminal.type)
        await self._replay_missed(entry)
        return Outcome(_KIND_OF[terminal.type], entry, [terminal, *tail])

    async def _closing_messages(self) -> list[Message]:
        """What follows the terminal message, up to `executing {node: null}` (sent once ComfyUI wrote
        history); held with the terminal message so the owner gets them in ComfyUI's order."""
        tail: list[Message] = []
        try:
            # One timeout for the whole wait (not wait_for, a task of its own per message on 3.11).
            async with asyncio.timeout(self._settings.close_wait):
                while True:
                    item = await self._inbox.get()
                    if isinstance(item, Message):
                        tail.append(item)
                        if item.type == "executing" and item.data.get("node") is None:
                            return tail
        except TimeoutError:
            pass
        return [*tail, self._synthetic("executing", {"node": None, "prompt_id": self.prompt_id})]

    async def _history_after_end(self) -> dict[str, Any] | None:
        deadline = time.monotonic() + self._settings.close_wait
        while True:
            try:
                entry = await self._deps.comfy.history_entry(self.prompt_id)
            except ComfyUIUnavailable:
                entry = None
            if entry is not None or time.monotonic() >= deadline:
                return entry
            await asyncio.sleep(0.05)

    async def _check(self, closing: Message | None = None) -> Outcome | None:
        now = time.monotonic()
        self._last_check = now
        try:
            state = await read_state(self._deps.comfy, self.prompt_id)
        except ComfyUIUnavailable as exc:
            if now - self._last_contact >= self._settings.comfyui_lost_timeout:
                return Outcome(OutcomeKind.VANISHED, detail=f"ComfyUI unreachable: {exc}")
            return None
        self._last_contact = now
        if state.status is Remote.FINISHED and state.history is not None:
            return await self._from_history(state.history, closing)
        if state.status is Remote.UNKNOWN:
            if self._unknown_since is None:
                self._unknown_since = now
                return None
            if now - self._unknown_since >= UNKNOWN_RECHECK:
                return Outcome(OutcomeKind.VANISHED, detail="ComfyUI no longer knows the prompt (restarted?)")
            return None
        self._unknown_since = None
        if state.status is Remote.RUNNING:
            self._started_once()
            await self._revive_silent_socket(now)
        return None

    async def _revive_silent_socket(self, now: float) -> None:
        # Running, yet nothing heard for a while: ComfyUI may have stopped addressing our socket
        # (an old socket of ours closed after the new one registered). Re-registering fixes that.
        follower, quiet = self._deps.follower, self._settings.silence_timeout
        if (
            self._connected
            and now - self._last_message >= quiet
            and now - follower.last_reconnect_request >= quiet
        ):
            log.info("socket silent for %.0fs while the prompt runs: reconnecting", now - self._last_message)
            await follower.reconnect()

    async def _from_history(self, entry: dict[str, Any], closing: Message | None) -> Outcome:
        self._started_once()
        await self._replay_missed(entry)
        terminal = self._terminal_from(entry)
        closing = closing or self._synthetic("executing", {"node": None, "prompt_id": self.prompt_id})
        log.info("outcome recovered from ComfyUI's history: %s", terminal.type)
        return Outcome(_KIND_OF[terminal.type], entry, [terminal, closing])

    def _terminal_from(self, entry: dict[str, Any]) -> Message:
        status = entry.get("status") or {}
        for event in reversed(status.get("messages") or []):
            if isinstance(event, list) and len(event) >= 2 and event[0] in TERMINAL:
                return Message(event[0], dict(event[1]))
        kind = "execution_success" if status.get("status_str") == "success" else "execution_error"
        return self._synthetic(kind, {"prompt_id": self.prompt_id, "timestamp": now_ms()})

    async def _replay_missed(self, entry: dict[str, Any]) -> None:
        """An `executed` for every output node whose event the socket missed."""
        meta = entry.get("meta") or {}
        for node_id, output in (entry.get("outputs") or {}).items():
            if str(node_id) in self._relayed_nodes or not isinstance(output, dict):
                continue
            display = (meta.get(node_id) or {}).get("display_node") or node_id
            data = {"node": node_id, "display_node": display, "output": output, "prompt_id": self.prompt_id}
            await self._relay_executed(data)

    def _unconfirmed_interrupt(self) -> Outcome:
        """ComfyUI never confirmed the interrupt (a node that checks for none): end the job anyway."""
        terminal = self._synthetic(
            "execution_interrupted",
            {
                "prompt_id": self.prompt_id,
                "node_id": None,
                "node_type": None,
                "executed": [],
                "timestamp": now_ms(),
            },
        )
        self.draft.note(terminal)
        closing = self._synthetic("executing", {"node": None, "prompt_id": self.prompt_id})
        entry = self.draft.entry(terminal.type)
        return Outcome(
            OutcomeKind.INTERRUPTED, entry, [terminal, closing], "ComfyUI did not confirm the interrupt"
        )

    @staticmethod
    def _synthetic(kind: str, data: dict[str, Any]) -> Message:
        return Message(kind, data)
