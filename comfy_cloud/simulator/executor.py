"""Runs queued prompts one at a time and emits ComfyUI's messages in the recorded order.

Per prompt (ws/success-fresh-*.json): `status` (get), `execution_start`, `execution_cached {nodes: []}`
(nothing is cached), then per node `progress_state(running)`, `executing`, [progress_state + preview +
progress]*, `executed`?, `progress_state(finished)`; then `execution_success` | `execution_error` |
`execution_interrupted`, `status`, `executing {node: null}`.

Addressing (§4.3): events go to the prompt's client_id. Without one, `progress_state`, `progress`,
previews and `execution_interrupted` are broadcast and the rest is not sent; progress text is always
broadcast. Interrupts are checked before a node runs and on every progress update, never in the middle
of a node, so a slow node without progress runs to its end first.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from comfy_cloud.comfyui import frames
from comfy_cloud.simulator import images
from comfy_cloud.simulator.graph import COERCE, execution_order, is_link
from comfy_cloud.simulator.nodes import NODES, NodeResult, Preview
from comfy_cloud.simulator.store import QueueItem

if TYPE_CHECKING:
    from comfy_cloud.simulator.state import SimState

log = logging.getLogger(__name__)


class Interrupted(Exception):
    """ComfyUI's InterruptProcessingException."""


class NodeFailed(Exception):
    def __init__(self, node_id: str, details: dict[str, Any]) -> None:
        super().__init__(node_id)
        self.node_id = node_id
        self.details = details


def now_ms() -> int:
    return int(time.time() * 1000)


def _type_name(exc: BaseException) -> str:
    module = type(exc).__module__
    name = type(exc).__qualname__
    return name if module in ("builtins", "__main__") else f"{module}.{name}"


def _format_value(value: Any) -> Any:
    if value is None or isinstance(value, int | float | bool | str):
        return value
    return images.tensor_repr(value)


def _coerce(spec: Any, value: Any) -> Any:
    """Widget values as a node sees them: unwrapped and converted to the declared type."""
    if isinstance(value, dict) and "__value__" in value:
        value = value["__value__"]
    kind = spec[0] if isinstance(spec, list) and spec else None
    convert = COERCE.get(kind) if isinstance(kind, str) else None
    return convert(value) if convert is not None else value


class PromptRun:
    """The prompt being executed: what history and the messages need."""

    def __init__(self, item: QueueItem) -> None:
        self.item = item
        self.prompt_id = item.prompt_id
        self.client_id: str | None = item.extra_data.get("client_id")
        self.messages: list[list[Any]] = []
        self.values: dict[str, tuple[Any, ...]] = {}
        self.ui: dict[str, dict[str, Any]] = {}
        self.meta: dict[str, dict[str, Any]] = {}
        self.executed: list[str] = []
        self.progress: dict[str, dict[str, Any]] = {}
        self.last_node_id: str | None = None


class NodeRunner:
    """The NodeContext a node function sees while it runs."""

    def __init__(self, executor: Executor, run: PromptRun, node_id: str) -> None:
        self.executor = executor
        self.run = run
        self.node_id = node_id
        self.dirs = executor.state.dirs
        self.preview_size = executor.state.config.preview_size

    def check_interrupt(self) -> None:
        if self.executor.interrupt_requested:
            raise Interrupted()

    async def progress(self, value: int, total: int, preview: Preview | None = None) -> None:
        self.check_interrupt()
        self.executor.update_progress(self.run, self.node_id, value, total, preview)

    def progress_text(self, text: str) -> None:
        self.executor.state.hub.send_bytes(frames.encode_progress_text(self.node_id, text), None)

    async def compute(self, pixels: int, fn: Callable[..., Any], *args: Any) -> Any:
        if pixels > self.executor.state.config.thread_threshold_pixels:
            return await asyncio.to_thread(fn, *args)
        return fn(*args)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Executor:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.run: PromptRun | None = None
        self.interrupt_requested = False
        self.prompts_done = 0

    # -- control -------------------------------------------------------------------------------------
    async def loop(self) -> None:
        while True:
            item = await self.state.store.get()
            await self.execute(item)

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Global interrupt (no id) or only if that prompt is running; True if it applied to a run."""
        if prompt_id is None:
            self.interrupt_requested = True
            return self.run is not None
        if self.run is not None and self.run.prompt_id == prompt_id:
            self.interrupt_requested = True
            return True
        return False

    @property
    def client_id(self) -> str | None:
        return self.run.client_id if self.run else None

    @property
    def last_node_id(self) -> str | None:
        return self.run.last_node_id if self.run else None

    # -- messages ------------------------------------------------------------------------------------
    def send(self, run: PromptRun, event: str, data: Any) -> None:
        self.state.hub.send_json(event, data, run.client_id)

    def add_message(self, run: PromptRun, event: str, data: dict[str, Any], broadcast: bool) -> None:
        """A timestamped execution_* message, kept for history and sent unless suppressed (§4.3)."""
        data = {**data, "timestamp": now_ms()}
        run.messages.append([event, data])
        if run.client_id is not None or broadcast:
            self.send(run, event, data)

    def send_progress_state(self, run: PromptRun) -> None:
        nodes = {
            node_id: {
                "value": entry["value"],
                "max": entry["max"],
                "state": entry["state"],
                "node_id": node_id,
                "prompt_id": run.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
            }
            for node_id, entry in run.progress.items()
        }
        self.send(run, "progress_state", {"prompt_id": run.prompt_id, "nodes": nodes})

    def update_progress(
        self, run: PromptRun, node_id: str, value: int, total: int, preview: Preview | None
    ) -> None:
        run.progress[node_id] = {"value": value, "max": total, "state": "running"}
        self.send_progress_state(run)
        hub, sid = self.state.hub, run.client_id
        negotiated = hub.supports_preview_metadata(sid)
        encoded = None
        if preview is not None and hub.has_recipient(sid):
            fmt, image, max_size = preview
            encoded = images.encode_preview(image, fmt, max_size)
        if encoded is not None and negotiated:
            metadata = {
                "node_id": node_id,
                "prompt_id": run.prompt_id,
                "display_node_id": node_id,
                "parent_node_id": None,
                "real_node_id": node_id,
                "image_type": "image/png" if preview and preview[0] == "PNG" else "image/jpeg",
            }
            hub.send_bytes(frames.encode_preview_with_metadata(encoded, metadata), sid)
        self.send(
            run, "progress", {"value": value, "max": total, "prompt_id": run.prompt_id, "node": node_id}
        )
        if encoded is not None and not negotiated and preview is not None:
            hub.send_bytes(frames.encode_preview(encoded, preview[0]), sid)

    # -- one prompt ----------------------------------------------------------------------------------
    async def execute(self, item: QueueItem) -> None:
        run = PromptRun(item)
        self.run = run
        self.interrupt_requested = False  # ComfyUI clears the flag when a prompt starts
        success = False
        try:
            self.add_message(run, "execution_start", {"prompt_id": run.prompt_id}, broadcast=False)
            self.add_message(
                run, "execution_cached", {"nodes": [], "prompt_id": run.prompt_id}, broadcast=False
            )
            for node_id in self._order(item):
                await self.run_node(run, node_id)
            self.add_message(run, "execution_success", {"prompt_id": run.prompt_id}, broadcast=False)
            success = True
        except Interrupted:
            self._report_interrupt(run)
        except NodeFailed as failure:
            self._report_failure(run, failure)
        except asyncio.CancelledError:
            self.run = None  # a simulated restart: the prompt vanishes without a trace
            raise
        except Exception:
            log.exception("simulator: prompt %s crashed", item.prompt_id)
        self._finish(run, success)

    def _order(self, item: QueueItem) -> list[str]:
        catalog = self.state.catalog

        def is_output(node_id: str) -> bool:
            definition = catalog.get(item.prompt[node_id].get("class_type", ""))
            return bool(definition and definition.get("output_node"))

        return execution_order(item.prompt, item.outputs, is_output)

    def _finish(self, run: PromptRun, success: bool) -> None:
        status = {
            "status_str": "success" if success else "error",
            "completed": success,
            "messages": run.messages,
        }
        self.state.store.task_done(run.item, status, {"outputs": run.ui, "meta": run.meta})
        if run.client_id is not None:
            self.send(run, "executing", {"node": None, "prompt_id": run.prompt_id})
        self.run = None
        self.prompts_done += 1

    def _report_interrupt(self, run: PromptRun) -> None:
        node_id = run.last_node_id or ""
        data = {
            "prompt_id": run.prompt_id,
            "node_id": node_id,
            "node_type": run.item.prompt.get(node_id, {}).get("class_type"),
            "executed": list(run.executed),
        }
        self.add_message(run, "execution_interrupted", data, broadcast=True)

    def _report_failure(self, run: PromptRun, failure: NodeFailed) -> None:
        data = {
            "prompt_id": run.prompt_id,
            "node_id": failure.node_id,
            "node_type": run.item.prompt[failure.node_id].get("class_type"),
            "executed": list(run.executed),
            **failure.details,
            "current_outputs": list(run.item.prompt),
        }
        self.add_message(run, "execution_error", data, broadcast=False)

    # -- one node ------------------------------------------------------------------------------------
    async def run_node(self, run: PromptRun, node_id: str) -> None:
        node = run.item.prompt[node_id]
        class_type = node.get("class_type", "")
        definition = self.state.catalog.get(class_type) or {}
        run.progress[node_id] = {"value": 0.0, "max": 1.0, "state": "running"}
        self.send_progress_state(run)
        run.last_node_id = node_id
        inputs: dict[str, Any] | None = None
        try:
            inputs = self._inputs(run, node_id, definition)
            if run.client_id is not None:
                self.send(
                    run, "executing", {"node": node_id, "display_node": node_id, "prompt_id": run.prompt_id}
                )
            result = await self._call(run, node_id, class_type, inputs)
        except Interrupted:
            raise
        except Exception as exc:
            raise NodeFailed(node_id, self._error_details(exc, inputs, definition)) from exc
        self._record(run, node_id, definition, result)

    async def _call(
        self, run: PromptRun, node_id: str, class_type: str, inputs: dict[str, Any]
    ) -> NodeResult:
        runner = NodeRunner(self, run, node_id)
        runner.check_interrupt()
        delay = self.state.config.delay_for(class_type)
        if delay > 0:
            await asyncio.sleep(delay)
        function = NODES.get(class_type)
        if function is None:
            raise NotImplementedError(
                f"The ComfyUI simulator cannot execute {class_type} nodes; only its built-in nodes run."
            )
        return await function(runner, inputs)

    def _record(self, run: PromptRun, node_id: str, definition: dict[str, Any], result: NodeResult) -> None:
        declared = len(definition.get("output") or [])
        run.values[node_id] = result.outputs[:declared]
        if result.ui:
            run.ui[node_id] = result.ui
            run.meta[node_id] = {
                "node_id": node_id,
                "display_node": node_id,
                "parent_node": None,
                "real_node_id": node_id,
            }
            if run.client_id is not None:
                executed = {
                    "node": node_id,
                    "display_node": node_id,
                    "output": result.ui,
                    "prompt_id": run.prompt_id,
                }
                self.send(run, "executed", executed)
        entry = run.progress[node_id]
        entry["state"], entry["value"] = "finished", entry["max"]
        self.send_progress_state(run)
        run.executed.append(node_id)

    def _inputs(self, run: PromptRun, node_id: str, definition: dict[str, Any]) -> dict[str, Any]:
        """Linked outputs and declared widget values, then the hidden inputs (ComfyUI's get_input_data)."""
        section = definition.get("input") or {}
        declared = {**(section.get("required") or {}), **(section.get("optional") or {})}
        inputs: dict[str, Any] = {}
        for name, value in run.item.prompt[node_id].get("inputs", {}).items():
            if is_link(value):
                inputs[name] = run.values[value[0]][int(value[1])]
            elif name in declared:
                inputs[name] = _coerce(declared[name], value)
        for name, kind in (section.get("hidden") or {}).items():
            inputs[name] = self._hidden(run, node_id, kind[0] if isinstance(kind, list) else kind)
        return inputs

    def _hidden(self, run: PromptRun, node_id: str, kind: str) -> Any:
        if kind == "PROMPT":
            return run.item.prompt
        if kind == "EXTRA_PNGINFO":
            return run.item.extra_data.get("extra_pnginfo")
        if kind == "UNIQUE_ID":
            return node_id
        return None

    def _error_details(
        self, exc: Exception, inputs: dict[str, Any] | None, definition: dict[str, Any]
    ) -> dict[str, Any]:
        current: dict[str, list[Any]] = {}
        if inputs is not None:
            # V3 nodes (hidden given as a list) keep hidden values out of current_inputs, like ComfyUI.
            v3_hidden = {
                k
                for k, v in ((definition.get("input") or {}).get("hidden") or {}).items()
                if isinstance(v, list)
            }
            current = {
                name: [_format_value(value)] for name, value in inputs.items() if name not in v3_hidden
            }
        log.info("simulator: node failed: %s", exc)
        return {
            "exception_message": f"{exc}\n",
            "exception_type": _type_name(exc),
            "traceback": traceback.format_tb(exc.__traceback__),
            "current_inputs": current,
        }
