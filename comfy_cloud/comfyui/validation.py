"""ComfyUI's `POST /prompt` checks and prompt validation, with ComfyUI's exact error bodies.

Two styles: "0.33" reproduces ComfyUI 0.33.0 and "0.3" reproduces 0.3.64 (structural errors are
`invalid_prompt` there, `value_not_in_list` details differ, V3 "COMBO" inputs are not list-checked and there
is no prompt_id check). The reference bodies are tests/fixtures/comfyui/errors/.

ComfyUI turns Python exceptions raised while walking the graph (a link to a missing node, a bad output
index, ...) into `exception_during_*` reasons carrying the exception's type and text. We reproduce them by
performing the same lookups on the same data and wrapping only those lookups, so the messages are Python's
own; the tracebacks differ (they point into this module).

Deliberate differences, all where ComfyUI answers 500 or is non-deterministic:
- malformed bodies (a non-object prompt or node, a non-numeric `number`, ...) give 400 `invalid_prompt`;
- ComfyUI walks output nodes and inputs in set order (random per process); we use prompt order and
  declaration order, so `outputs_to_execute`, `dependent_outputs` and multi-error lists are deterministic;
- 0.3.64 recursed forever on a cycle; both styles report `dependency_cycle`;
- the prompt is not modified (ComfyUI writes coerced values back into it).
"""

from __future__ import annotations

import math
import traceback
import uuid
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any

from comfy_cloud.comfyui.nodedefs import (
    ANY_TYPE,
    COMBO_TYPE,
    MATCH_TYPE,
    UPLOAD_FLAGS,
    Catalogue,
    CustomValidator,
    InputDef,
    NodeClass,
)

STYLES = ("0.33", "0.3")
FileExists = Callable[[str, str], bool]

# ComfyUI does not echo option lists longer than this (model folders can hold thousands of files).
MAX_LISTED_OPTIONS = 20
_COERCIONS: Mapping[str, Callable[[Any], Any]] = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


class PromptError(Exception):
    """A rejected prompt: `body` is ComfyUI's error body, `status` the HTTP status to answer with."""

    def __init__(self, error: dict[str, Any], node_errors: dict[str, Any] | None = None, status: int = 400):
        super().__init__(f"{error['type']}: {error['message']}")
        self.status = status
        self.body: dict[str, Any] = {"error": error, "node_errors": node_errors or {}}

    @property
    def error(self) -> dict[str, Any]:
        return self.body["error"]


@dataclass
class ValidationResult:
    outputs_to_execute: list[str]
    node_errors: dict[str, Any] = field(default_factory=dict)  # non-empty when some outputs were dropped


def _reason(
    kind: str, message: str, details: str, extra_info: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"type": kind, "message": message, "details": details, "extra_info": extra_info or {}}


def _invalid_prompt(message: str, details: str) -> PromptError:
    # Our 400 for bodies ComfyUI answers with a bare 500.
    return PromptError(_reason("invalid_prompt", message, details))


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"unknown ComfyUI style {style!r}; expected one of {STYLES}")


def is_canonical_uuid(value: object) -> bool:
    """ComfyUI 0.25+ accepts a client prompt_id only as a lowercase hyphenated UUID."""
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


# --------------------------------------------------------------------------------------------------
# Request body
# --------------------------------------------------------------------------------------------------


def check_prompt_request(body: object, *, style: str = "0.33") -> None:
    """The checks `POST /prompt` makes before validating the graph, in ComfyUI's order."""
    _check_style(style)
    if isinstance(body, dict) and "number" in body:
        _check_number(body["number"])
    if not isinstance(body, dict) or "prompt" not in body:
        raise PromptError(_reason("no_prompt", "No prompt provided", "No prompt provided"))
    prompt_id = body.get("prompt_id")
    if style == "0.33" and prompt_id is not None and not is_canonical_uuid(prompt_id):
        raise PromptError(
            _reason(
                "invalid_prompt_id",
                "prompt_id must be a valid UUID",
                "prompt_id must be a UUID string in canonical lowercase hyphenated form; "
                "omit it to let the server generate one",
            )
        )
    _check_prompt_type(body["prompt"])
    targets = body.get("partial_execution_targets")
    if targets is not None and not isinstance(targets, list):
        raise _invalid_prompt(
            "partial_execution_targets must be a list of node ids",
            f"partial_execution_targets is {_json_type(targets)}",
        )
    if "extra_data" in body and not isinstance(body["extra_data"], dict):
        raise _invalid_prompt(
            "extra_data must be an object", f"extra_data is {_json_type(body['extra_data'])}"
        )


def _check_number(number: object) -> None:
    # ComfyUI computes float(number) first and answers 500 when that fails.
    try:
        float(number)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise _invalid_prompt("number must be a number", f"number is {_json_type(number)}") from None


def _check_prompt_type(prompt: object) -> None:
    if not isinstance(prompt, dict):
        raise _invalid_prompt(
            "prompt must be an object mapping node ids to nodes", f"prompt is {_json_type(prompt)}"
        )


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number" if isinstance(value, int | float) else type(value).__name__)


# --------------------------------------------------------------------------------------------------
# Graph helpers
# --------------------------------------------------------------------------------------------------


def required_node_classes(prompt: dict) -> set[str]:
    """The class_types a worker needs to run this graph."""
    return {
        node["class_type"]
        for node in prompt.values()
        if isinstance(node, dict) and isinstance(node.get("class_type"), str)
    }


def file_inputs(prompt: dict, object_info: Mapping[str, dict]) -> list[tuple[str, str, str]]:
    """(node_id, input_name, file name) of every input that names an uploaded file, in prompt order.

    Covers upload widgets (image/video/audio/3D, also on non-combo inputs such as Painter's mask) and the
    stock loaders whose validate function checks a file (LoadImage*, LoadLatent, WebcamCapture, ...).
    Links, empty values and "none" (Load3D's no-file choice) are skipped; names are returned verbatim
    (they may carry a subfolder and a " [input]"-style annotation).
    """
    catalogue = Catalogue(object_info)
    found: list[tuple[str, str, str]] = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
            continue
        cls = catalogue.get(node.get("class_type"))
        if cls is None:
            continue
        for name in _file_input_names(cls, node["inputs"]):
            value = node["inputs"].get(name)
            if isinstance(value, str) and value and value != "none":
                found.append((node_id, name, value))
    return found


def _file_input_names(cls: NodeClass, inputs: dict) -> list[str]:
    names = list(cls.upload_inputs)
    if cls.static_inputs is None:  # upload widgets inside dynamic inputs
        try:
            defs, _ = cls.inputs_for(inputs)
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            defs = ()  # validation reports the broken definition
        names += [d.name for d in defs if d.name not in names and _has_upload_flag(d)]
    validator = cls.validator
    if validator is not None and validator.file_input and validator.file_input not in names:
        names.append(validator.file_input)
    return names


def _has_upload_flag(definition: InputDef) -> bool:
    return any(definition.options.get(flag) is True for flag in UPLOAD_FLAGS)


def types_compatible(received_type: Any, input_type: Any) -> bool:
    """ComfyUI's link type rule: equal, "*" on either side, match types, or overlapping "A,B" lists."""
    if received_type == input_type:
        return True
    if ANY_TYPE in (received_type, input_type) or MATCH_TYPE in (received_type, input_type):
        return True
    if isinstance(received_type, list) and input_type == COMBO_TYPE:
        return True  # custom nodes that output an option list as their type
    if not isinstance(received_type, str) or not isinstance(input_type, str):
        return False
    received = {t.strip() for t in received_type.split(",")}
    accepted = {t.strip() for t in input_type.split(",")}
    return ANY_TYPE in received or ANY_TYPE in accepted or not received.isdisjoint(accepted)


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


class _NodeFailure(Exception):
    """A Python exception ComfyUI would have raised while validating a node (KeyError, IndexError, ...)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


def _get(container: Any, key: Any) -> Any:
    try:
        return container[key]
    except (KeyError, IndexError, TypeError) as exc:
        raise _NodeFailure(exc) from exc


def _has(container: Any, key: Any) -> bool:
    try:
        return key in container
    except TypeError as exc:
        raise _NodeFailure(exc) from exc


def _exception_info(exc: _NodeFailure) -> dict[str, Any]:
    kind = type(exc.cause)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return {"exception_type": name, "traceback": traceback.format_tb(exc.__traceback__, limit=-20)}


def validate_prompt(
    prompt: dict,
    object_info: Mapping[str, dict],
    *,
    partial_execution_targets: list[str] | None = None,
    style: str = "0.33",
    file_exists: FileExists | None = None,
) -> ValidationResult:
    """Validate an API-format graph like ComfyUI's validate_prompt; raise PromptError when it fails.

    Succeeds (HTTP 200) when at least one output node is valid; `node_errors` then lists the failed rest.
    `file_exists(class_type, name)` answers whether an uploaded file exists (LoadImage and other file
    inputs); without it the file check is skipped.
    """
    _check_style(style)
    _check_prompt_type(prompt)
    catalogue = Catalogue(object_info)
    outputs = _output_nodes(prompt, catalogue, partial_execution_targets, style)
    if not outputs:
        raise PromptError(_reason("prompt_no_outputs", "Prompt has no outputs", ""))
    walker = _Walker(prompt, catalogue, style, file_exists)
    good: list[str] = []
    failures: list[list[dict[str, Any]]] = []
    node_errors: dict[str, Any] = {}
    for output_id in outputs:
        ok, reasons = walker.validate_output(output_id)
        if ok:
            good.append(output_id)
            continue
        failures.append(reasons)
        _collect_node_errors(prompt, walker.validated, output_id, node_errors)
    if not good:
        details = "\n".join(f"{r['message']}: {r['details']}" for reasons in failures for r in reasons)
        error = _reason("prompt_outputs_failed_validation", "Prompt outputs failed validation", details)
        raise PromptError(error, node_errors)
    return ValidationResult(good, node_errors)


def _collect_node_errors(prompt: dict, validated: dict, output_id: str, node_errors: dict[str, Any]) -> None:
    # Like ComfyUI, every failed node seen so far (not only this output's ancestors) gets the output.
    for node_id, (ok, reasons) in validated.items():
        if ok or not reasons:
            continue  # downstream of a failure: invalid without reasons of its own
        entry = node_errors.get(node_id)
        if entry is None:
            entry = {"errors": reasons, "dependent_outputs": [], "class_type": prompt[node_id]["class_type"]}
            node_errors[node_id] = entry
        entry["dependent_outputs"].append(output_id)


def _output_nodes(prompt: dict, catalogue: Catalogue, targets: list[str] | None, style: str) -> list[str]:
    """Output node ids, after ComfyUI's structural checks (each node needs a known class_type)."""
    outputs: list[str] = []
    for node_id, node in prompt.items():
        if not isinstance(node, dict) or "class_type" not in node:
            raise PromptError(_missing_class_type(node_id, node, style))
        class_type = node["class_type"]
        if isinstance(class_type, list | dict):
            raise _invalid_prompt("class_type must be a string", f"Node ID '#{node_id}'")
        cls = catalogue.get(class_type)
        if cls is None:
            raise PromptError(_unknown_class_type(node_id, node, class_type, style))
        if cls.output_node and (targets is None or node_id in targets):
            outputs.append(node_id)
    return outputs


def _node_title(node: Any, default: Any) -> Any:
    meta = node.get("_meta") if isinstance(node, dict) else None
    return meta.get("title", default) if isinstance(meta, dict) else default


def _missing_class_type(node_id: str, node: Any, style: str) -> dict[str, Any]:
    if style == "0.3":
        message = "Cannot execute because a node is missing the class_type property."
        return _reason("invalid_prompt", message, f"Node ID '#{node_id}'")
    title = _node_title(node, None)
    message = (
        f"Node '{title or f'ID #{node_id}'}' has no class_type. "
        "The workflow may be corrupted or a custom node is missing."
    )
    extra = {"node_id": node_id, "class_type": None, "node_title": _copy(title)}
    return _reason("missing_node_type", message, f"Node ID '#{node_id}'", extra)


def _unknown_class_type(node_id: str, node: dict, class_type: Any, style: str) -> dict[str, Any]:
    if style == "0.3":
        message = f"Cannot execute because node {class_type} does not exist."
        return _reason("invalid_prompt", message, f"Node ID '#{node_id}'")
    title = _node_title(node, class_type)
    message = f"Node '{title}' not found. The custom node may not be installed."
    extra = {"node_id": node_id, "class_type": _copy(class_type), "node_title": _copy(title)}
    return _reason("missing_node_type", message, f"Node ID '#{node_id}'", extra)


Result = tuple[bool, list[dict[str, Any]]]
_ABSENT = object()


class _Walker:
    """Depth-first validation of the nodes an output depends on (ComfyUI's recursive validate_inputs).

    Each node is checked by a generator that yields the id of a linked node whenever it needs that node's
    result; `_walk` drives them with an explicit stack, so graph depth is not bounded by Python's recursion
    limit (ComfyUI's async recursion goes about a thousand nodes deep).
    """

    def __init__(self, prompt: dict, catalogue: Catalogue, style: str, file_exists: FileExists | None):
        self.prompt = prompt
        self.catalogue = catalogue
        self.style = style
        self.file_exists = file_exists
        self.validated: dict[str, Result] = {}

    def validate_output(self, output_id: str) -> Result:
        try:
            return self._walk(output_id)
        except _NodeFailure as exc:
            reason = _reason("exception_during_validation", "Exception when validating node", str(exc.cause))
            reason["extra_info"] = _exception_info(exc)
            self.validated[output_id] = (False, [reason])
            return False, [reason]

    def _walk(self, root: str) -> Result:
        path: list[str] = []  # nodes being checked, outermost first (ComfyUI's "visiting")
        on_path: set[str] = set()
        frames: list[Generator[str, Result, Result]] = []
        wanted: str | None = root
        answer: Result | None = None
        failure: _NodeFailure | None = None
        while True:
            if wanted is not None:  # a node asked for `wanted`'s result (or we start at the root)
                known = self.validated.get(wanted)
                if known is None and wanted in on_path:
                    known = self._cycle(wanted, path)
                if known is not None and not frames:
                    return known
                if known is None:
                    path.append(wanted)
                    on_path.add(wanted)
                    frames.append(self._check_node(wanted))
                answer, wanted = known, None
            try:
                if failure is not None:
                    wanted = frames[-1].throw(failure)
                else:
                    wanted = frames[-1].send(answer)  # type: ignore[arg-type]
                answer = failure = None
                continue
            except StopIteration as done:
                answer, failure = done.value, None
            except _NodeFailure as exc:  # not handled by this node: its parent reports it
                answer, failure = None, exc
            frames.pop()
            on_path.discard(path.pop())
            if not frames:
                if failure is not None:
                    raise failure
                return answer  # type: ignore[return-value]

    def _check_node(self, node_id: str) -> Generator[str, Result, Result]:
        node = self.prompt[node_id]
        inputs = _get(node, "inputs")
        cls = self.catalogue.get(node["class_type"])
        assert cls is not None  # every class_type was checked before walking
        declared, dynamic = _declared_inputs(cls, inputs)
        checks = _NodeChecks(self, cls, inputs, dynamic)
        for definition in declared:
            value = checks.value_of(definition)
            if value is _ABSENT:
                continue
            if not isinstance(value, list):
                checks.check_value(definition, value)
                continue
            if not checks.check_link(definition, value):
                continue
            try:
                ok, _ = yield value[0]
            except _NodeFailure as exc:
                self.validated[value[0]] = (False, [_inner_exception(definition, value, exc)])
                ok = False
            checks.valid = checks.valid and ok
        if cls.validator is not None:
            checks.run_validator(cls.validator, {d.name for d in declared})
        # A cycle found below this node may already have recorded reasons for it: keep them.
        prior_ok, prior = self.validated.get(node_id, (True, []))
        ok = prior_ok and checks.valid and not checks.errors
        result = (ok, prior + [e for e in checks.errors if e not in prior])
        self.validated[node_id] = result
        return result

    def _cycle(self, node_id: str, visiting: list[str]) -> Result:
        path = [*visiting[visiting.index(node_id) :], node_id]
        members = list(dict.fromkeys(path))
        details = " -> ".join(f"{n} ({self.prompt[n]['class_type']})" for n in path)
        for member in members:
            extra = {"node_id": member, "cycle_nodes": list(members)}
            reason = _reason("dependency_cycle", "Dependency cycle detected", details, extra)
            self.validated[member] = (False, [reason])
        return self.validated[node_id]


def _declared_inputs(cls: NodeClass, inputs: Any) -> tuple[tuple[InputDef, ...], bool]:
    try:
        return cls.inputs_for(inputs)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        # A dynamic input the catalogue describes oddly: ComfyUI fails while expanding it, too.
        raise _NodeFailure(exc) from exc


def _inner_exception(definition: InputDef, link: list, exc: _NodeFailure) -> dict[str, Any]:
    # Reported on the linked node, with the linking input's name and config (ComfyUI's layout).
    message = str(exc.cause)
    extra = {
        "input_name": definition.name,
        "input_config": _copy(definition.config),
        "exception_message": message,
        **_exception_info(exc),
        "linked_node": _copy(link),
    }
    return _reason(
        "exception_during_inner_validation", "Exception when validating inner node", message, extra
    )


class _NodeChecks:
    """The checks of one node: `errors` are its own reasons, `valid` turns false when upstream failed."""

    def __init__(self, walker: _Walker, cls: NodeClass, inputs: Any, dynamic: bool):
        self.walker = walker
        self.cls = cls
        self.inputs = inputs
        self.dynamic = dynamic  # dotted names were expanded: missing-input details use the last segment
        self.errors: list[dict[str, Any]] = []
        self.valid = True

    def _validator_takes(self, name: str) -> bool:
        validator = self.cls.validator
        return validator is not None and (validator.kwargs or name in validator.args)

    def value_of(self, definition: InputDef) -> Any:
        name = definition.name
        if _has(self.inputs, name):
            return _get(self.inputs, name)
        if definition.required:
            details = name.split(".")[-1] if self.dynamic else name
            extra = {"input_name": name}
            self.errors.append(_reason("required_input_missing", "Required input is missing", details, extra))
        return _ABSENT

    def check_link(self, definition: InputDef, link: list) -> bool:
        """True when the linked node must be validated next (shape and type are fine)."""
        name = definition.name
        if len(link) != 2:
            extra = {
                "input_name": name,
                "input_config": _copy(definition.config),
                "received_value": _copy(link),
            }
            message = "Bad linked input, must be a length-2 list of [node_id, slot_index]"
            self.errors.append(_reason("bad_linked_input", message, name, extra))
            return False
        catalogue = self.walker.catalogue
        source = _get(self.walker.prompt, link[0])
        received = _get(catalogue.get(source["class_type"]).outputs, link[1])  # type: ignore[union-attr]
        validator = self.cls.validator
        if (validator is not None and validator.input_types) or types_compatible(received, definition.type):
            return True
        extra = {
            "input_name": name,
            "input_config": _copy(definition.config),
            "received_type": _copy(received),
            "linked_node": _copy(link),
        }
        details = f"{name}, received_type({received}) mismatch input_type({definition.type})"
        self.errors.append(
            _reason("return_type_mismatch", "Return type mismatch between linked nodes", details, extra)
        )
        return False

    def check_value(self, definition: InputDef, value: Any) -> None:
        name = definition.name
        if isinstance(value, dict) and "__value__" in value:
            value = value["__value__"]  # a literal list, wrapped so that it is not read as a link
        coerce = _COERCIONS.get(definition.type) if isinstance(definition.type, str) else None
        if coerce is not None:
            try:
                value = coerce(value)
            except Exception as exc:  # int()/float() failures, reported with Python's own message
                extra = {
                    "input_name": name,
                    "input_config": _copy(definition.config),
                    "received_value": _copy(value),
                    "exception_message": str(exc),
                }
                message = f"Failed to convert an input value to a {definition.type} value"
                self.errors.append(_reason("invalid_input_type", message, f"{name}, {value}, {exc}", extra))
                return
        if self._validator_takes(name):
            return  # the node's own validate function checks this input instead
        reason = self._range_reason(definition, value) or self._list_reason(definition, value)
        if reason is not None:
            self.errors.append(reason)

    def _range_reason(self, definition: InputDef, value: Any) -> dict[str, Any] | None:
        options = definition.options
        try:
            if "min" in options and value < options["min"]:
                kind, message = (
                    "value_smaller_than_min",
                    f"Value {value} smaller than min of {options['min']}",
                )
            elif "max" in options and value > options["max"]:
                kind, message = "value_bigger_than_max", f"Value {value} bigger than max of {options['max']}"
            else:
                return None
        except TypeError as exc:  # e.g. a string against a numeric bound: ComfyUI raises here
            raise _NodeFailure(exc) from exc
        extra = {
            "input_name": definition.name,
            "input_config": _copy(definition.config),
            "received_value": _copy(value),
        }
        return _reason(kind, message, definition.name, extra)

    def _list_reason(self, definition: InputDef, value: Any) -> dict[str, Any] | None:
        input_type = definition.type
        new_style = self.walker.style == "0.33"
        if isinstance(input_type, list):
            choices = input_type
        elif new_style and input_type == COMBO_TYPE:
            choices = definition.options.get("options", [])
        else:
            return None
        if new_style and definition.options.get("multiselect", False) and isinstance(value, list):
            invalid = [v for v in value if v not in choices]
        else:
            invalid = [value] if value not in choices else []
        if not invalid:
            return None
        config: Any = _copy(definition.config)
        if len(choices) > MAX_LISTED_OPTIONS:
            listing, config = f"(list of length {len(choices)})", None
        else:
            listing = str(choices)
        if new_style:
            details = f"{definition.name}: {', '.join(repr(v) for v in invalid)} not in {listing}"
        else:
            details = f"{definition.name}: '{value}' not in {listing}"
        extra = {"input_name": definition.name, "input_config": config, "received_value": _copy(value)}
        return _reason("value_not_in_list", "Value not in list", details, extra)

    def run_validator(self, validator: CustomValidator, declared: set[str]) -> None:
        """Reproduce the node's own validate function: its arguments, its outcome, one error per argument."""
        passed = [
            name
            for name in _keys(self.inputs)
            if (validator.kwargs or name in validator.args)
            and (_is_link(self.inputs[name]) or name in declared)
        ]
        missing = [arg for arg in validator.required_args if arg not in passed]
        if missing:  # Python refuses the call; ComfyUI reports the TypeError
            raise _NodeFailure(TypeError(_missing_arguments(validator.function, missing)))
        outcome = self._validator_outcome(validator, passed)
        if outcome is True:
            return
        for name in passed:
            extra = {"input_name": name}
            reason = _reason(
                "custom_validation_failed", "Custom validation failed for node", f"{name} - {outcome}", extra
            )
            self.errors.append(reason)

    def _validator_outcome(self, validator: CustomValidator, passed: list[str]) -> str | bool:
        if validator.one_of and not any(name in passed for name in validator.one_of):
            return validator.one_of_message
        name = validator.file_input
        file_exists = self.walker.file_exists
        if name is None or file_exists is None or name not in passed:
            return True
        value = self.inputs[name]
        value = None if _is_link(value) else _unwrap(value)  # a linked value is not known yet
        if validator.file_ignore and (
            not value or (isinstance(value, str) and value in validator.file_ignore)
        ):
            return True  # Load3D: no file chosen
        if not isinstance(value, str):
            # ComfyUI's folder_paths calls name.endswith(...) and fails on anything but a string
            raise _NodeFailure(AttributeError(f"'{type(value).__name__}' object has no attribute 'endswith'"))
        if value == "" or file_exists(self.cls.name, value):
            return True  # "" names the input folder itself, which exists
        return validator.file_message.format(value)


def _keys(inputs: Any) -> list[Any]:
    return list(inputs) if isinstance(inputs, dict) else []


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], int | float)
    )


def _unwrap(value: Any) -> Any:
    return value["__value__"] if isinstance(value, dict) and "__value__" in value else value


def _missing_arguments(function: str, missing: list[str]) -> str:
    quoted = [f"'{name}'" for name in missing]
    if len(quoted) == 1:
        return f"{function}() missing 1 required positional argument: {quoted[0]}"
    listed = ", ".join(quoted[:-1]) + (", and " if len(quoted) > 2 else " and ") + quoted[-1]
    return f"{function}() missing {len(quoted)} required positional arguments: {listed}"


def _copy(value: Any) -> Any:
    """A JSON-safe copy for error bodies: they must not alias the caller's prompt or catalogue (both may
    be edited later) and must encode as strict JSON; a FLOAT input of "inf" would otherwise put a
    non-finite number in `received_value` (ComfyUI sends `Infinity`, which is not JSON; we send "inf")."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, list | tuple):
        return [_copy(item) for item in value]
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    return value
