"""The order in which ComfyUI runs the nodes of a prompt.

ComfyUI adds each output node and, depth first, its inputs to a pending list, then repeatedly picks among
the nodes whose inputs are ready: an output node first, else a node that feeds an output node, else one
two steps before an output node, else the first ready node. Reproducing that choice reproduces the
recorded message order (e.g. 1, 2, 5, 3, 4, 6, 7 for the 7-node graph of ws/success-fresh-0.33.0.json).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def is_link(value: Any) -> bool:
    """`[source_node_id, output_index]`; ComfyUI accepts a float index too."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int | float)
    )


class _Pending:
    def __init__(self, prompt: dict[str, Any]) -> None:
        self.prompt = prompt
        self.pending: dict[str, None] = {}  # insertion-ordered set
        self.block_count: dict[str, int] = {}
        self.blocking: dict[str, dict[str, None]] = {}

    def add(self, node_id: str) -> None:
        stack, links = [node_id], []
        while stack:
            current = stack.pop()
            if current in self.pending:
                continue
            self.pending[current] = None
            self.block_count[current] = 0
            self.blocking[current] = {}
            for value in self.prompt[current].get("inputs", {}).values():
                if is_link(value):
                    stack.append(value[0])
                    links.append((value[0], current))
        for source, target in links:
            if target not in self.blocking[source]:
                self.blocking[source][target] = None
                self.block_count[target] += 1

    def ready(self) -> list[str]:
        return [n for n in self.pending if self.block_count[n] == 0]

    def done(self, node_id: str) -> None:
        del self.pending[node_id]
        for target in self.blocking[node_id]:
            self.block_count[target] -= 1


def _pick(ready: list[str], blocking: dict[str, dict[str, None]], is_output: Callable[[str], bool]) -> str:
    for node_id in ready:
        if is_output(node_id):
            return node_id
    for node_id in ready:
        if any(is_output(b) for b in blocking[node_id]):
            return node_id
    for node_id in ready:
        if any(is_output(b2) for b in blocking[node_id] for b2 in blocking[b]):
            return node_id
    return ready[0]


def execution_order(
    prompt: dict[str, Any], outputs: Iterable[str], is_output: Callable[[str], bool]
) -> list[str]:
    """Every node the outputs depend on, in ComfyUI's execution order."""
    state = _Pending(prompt)
    for output in outputs:
        state.add(output)
    order: list[str] = []
    while state.pending:
        ready = state.ready()
        if not ready:  # a cycle: validation should have refused it
            raise RuntimeError("dependency cycle in prompt")
        node_id = _pick(ready, state.blocking, is_output)
        order.append(node_id)
        state.done(node_id)
    return order


COERCE: dict[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


def upstream(prompt: dict[str, Any], outputs: Iterable[str]) -> list[str]:
    """The outputs and every node they depend on."""
    seen: dict[str, None] = {}
    stack = list(outputs)
    while stack:
        node_id = stack.pop()
        if node_id in seen or node_id not in prompt:
            continue
        seen[node_id] = None
        stack.extend(v[0] for v in prompt[node_id].get("inputs", {}).values() if is_link(v))
    return list(seen)


def coerce_widgets(prompt: dict[str, Any], node_ids: Iterable[str], definition: Callable[[str], Any]) -> None:
    """Write converted widget values back into the prompt, as ComfyUI's validation does: a FLOAT given
    as 3 is queued, stored in history and embedded in PNGs as 3.0."""
    for node_id in node_ids:
        node = prompt[node_id]
        section = (definition(node.get("class_type", "")) or {}).get("input") or {}
        declared = {**(section.get("required") or {}), **(section.get("optional") or {})}
        inputs = node.get("inputs", {})
        for name, value in inputs.items():
            spec = declared.get(name)
            kind = spec[0] if isinstance(spec, list) and spec else None
            convert = COERCE.get(kind) if isinstance(kind, str) else None
            if convert is None or is_link(value) or isinstance(value, dict):
                continue
            try:
                inputs[name] = convert(value)
            except (TypeError, ValueError):
                continue  # validation reported it (on a branch that was dropped)
