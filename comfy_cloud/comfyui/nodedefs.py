"""What prompt validation needs to know about node classes, read from `/object_info` entries.

An object_info `input` section is exactly the class's INPUT_TYPES() (V1 and V3 nodes alike), so the node
catalogue is enough to validate a prompt, except for one thing it cannot show: a node's own
VALIDATE_INPUTS / validate_inputs function, which changes what ComfyUI checks. `KNOWN_VALIDATORS` lists the
stock nodes that have one; nodes with upload widgets (`image_upload`, `video_upload`, ...) get a file check
of the same kind, because their combo lists are the worker's input folder, not ours.

V3 dynamic inputs (autogrow, dynamic combo, dynamic slot) are expanded against the node's live inputs into
dotted names ("images.image0", "resize_type.width"), the same way ComfyUI 0.33 does before validating.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ANY_TYPE = "*"
COMBO_TYPE = "COMBO"
MATCH_TYPE = "COMFY_MATCHTYPE_V3"
AUTOGROW_TYPE = "COMFY_AUTOGROW_V3"
DYNAMIC_COMBO_TYPE = "COMFY_DYNAMICCOMBO_V3"
DYNAMIC_SLOT_TYPE = "COMFY_DYNAMICSLOT_V3"
DYNAMIC_TYPES = frozenset({AUTOGROW_TYPE, DYNAMIC_COMBO_TYPE, DYNAMIC_SLOT_TYPE})

# Widget flags that make the frontend offer an upload button; the value names a file in the input folder.
UPLOAD_FLAGS: Mapping[str, str] = {
    "image_upload": "image",
    "video_upload": "video",
    "audio_upload": "audio",
    "file_upload": "3D model",
}


@dataclass(frozen=True, slots=True)
class InputDef:
    """One declared input after dynamic expansion."""

    name: str  # full (possibly dotted) input name
    required: bool
    type: Any  # a type string, or the option list of a V1 combo
    options: Mapping[str, Any]  # the widget options (second element of the spec), {} when absent

    @property
    def config(self) -> list[Any]:
        """ComfyUI's `input_config`: [type, options]."""
        return [self.type, self.options]


@dataclass(frozen=True, slots=True)
class CustomValidator:
    """The effect of a node's own validate function (not visible in object_info)."""

    function: str  # qualified name, used in Python's missing-argument message
    args: frozenset[str] = frozenset()  # its parameters: these inputs skip range and list checks
    required_args: tuple[str, ...] = ()  # parameters without a default
    kwargs: bool = False  # takes **kwargs: every input skips range and list checks
    input_types: bool = False  # takes `input_types`: linked types are not checked
    file_input: str | None = None  # input naming a file that must exist
    file_message: str = "Invalid image file: {}"
    file_ignore: frozenset[str] = frozenset()  # values accepted without a file ("none" for Load3D)
    one_of: tuple[str, ...] = ()  # at least one of these inputs must be present
    one_of_message: str = ""


def _file_validator(function: str, arg: str, message: str) -> CustomValidator:
    return CustomValidator(
        function, args=frozenset({arg}), required_args=(arg,), file_input=arg, file_message=message
    )


_LOAD_IMAGE = _file_validator("LoadImage.VALIDATE_INPUTS", "image", "Invalid image file: {}")


def _load_3d(function: str) -> CustomValidator:
    return CustomValidator(
        function,
        args=frozenset({"model_file"}),
        required_args=("model_file",),
        kwargs=True,
        file_input="model_file",
        file_message="Invalid 3D model file: {}",
        file_ignore=frozenset({"none"}),
    )


def _pass_through(function: str, *args: str, required: tuple[str, ...] = ()) -> CustomValidator:
    # A validate function that returns True: its inputs merely skip the range and list checks.
    return CustomValidator(function, args=frozenset(args), required_args=required)


# Stock ComfyUI nodes (0.3.64 and 0.33.0) that define a validate function.
KNOWN_VALIDATORS: Mapping[str, CustomValidator] = {
    "LoadImage": _LOAD_IMAGE,
    "LoadImageMask": _LOAD_IMAGE,  # subclasses inherit LoadImage's function
    "LoadImageOutput": _LOAD_IMAGE,
    "WebcamCapture": _LOAD_IMAGE,
    "LoadLatent": _file_validator("LoadLatent.VALIDATE_INPUTS", "latent", "Invalid latent file: {}"),
    "LoadAudio": _file_validator("LoadAudio.validate_inputs", "audio", "Invalid audio file: {}"),
    "LoadVideo": _file_validator("LoadVideo.validate_inputs", "file", "Invalid video file: {}"),
    "Load3D": _load_3d("Load3D.validate_inputs"),
    "Load3DAdvanced": _load_3d("Load3DAdvanced.validate_inputs"),
    "ModelAttentionBackend": _pass_through(
        "ModelAttentionBackend.VALIDATE_INPUTS", "attention", required=("attention",)
    ),
    "SelectModelDevice": _pass_through("SelectModelDeviceNode.validate_inputs", "device"),
    "SelectCLIPDevice": _pass_through("SelectCLIPDeviceNode.validate_inputs", "device"),
    "SelectVAEDevice": _pass_through("SelectVAEDeviceNode.validate_inputs", "device"),
    "FluxProUltraImageNode": _pass_through(
        "FluxProUltraImageNode.validate_inputs", "aspect_ratio", required=("aspect_ratio",)
    ),
    "CustomCombo": CustomValidator(
        "CustomComboNode.validate_inputs",
        args=frozenset({"choice", "index"}),
        required_args=("choice",),
        kwargs=True,
    ),
    "ComfySoftSwitchNode": CustomValidator(
        "SoftSwitchNode.validate_inputs",
        args=frozenset({"switch", "on_false", "on_true"}),
        required_args=("switch",),
        one_of=("on_false", "on_true"),
        one_of_message="At least one of on_false or on_true must be connected to Switch node",
    ),
    "TripoConversionNode": CustomValidator(
        "TripoConversionNode.validate_inputs", args=frozenset({"input_types"}), input_types=True
    ),
}


@dataclass(slots=True)
class NodeClass:
    """A node class prepared for validation."""

    name: str
    definition: Mapping[str, Any]  # the object_info entry
    outputs: tuple[Any, ...] | list[Any]  # RETURN_TYPES: a list for V3 nodes, a tuple for V1 nodes
    output_node: bool
    static_inputs: tuple[InputDef, ...] | None  # None when the inputs depend on the live values
    validator: CustomValidator | None
    upload_inputs: dict[str, str] = field(default_factory=dict)  # input name -> media kind

    def inputs_for(self, live: Any) -> tuple[tuple[InputDef, ...], bool]:
        """The declared inputs for these live input values, and whether a dynamic input was expanded."""
        if self.static_inputs is not None:
            return self.static_inputs, False
        return expand_inputs(self.definition["input"], live)  # a dict: prepare_class saw dynamic inputs


def _is_v3(definition: Mapping[str, Any]) -> bool:
    # V3 node info always carries these keys (null when unused); V1 node info never does.
    return "output_matchtypes" in definition or "price_badge" in definition


def _spec_parts(spec: Any) -> tuple[Any, Mapping[str, Any]]:
    if isinstance(spec, str):  # 0.3.64 serves hidden inputs as bare strings
        return spec, {}
    if not isinstance(spec, list | tuple) or not spec:
        return None, {}
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    return spec[0], options


def _entries(section: Any, category: str) -> dict[str, Any]:
    entries = section.get(category) if isinstance(section, dict) else None
    return entries if isinstance(entries, dict) else {}


def _upload_kind(options: Mapping[str, Any]) -> str | None:
    for flag, kind in UPLOAD_FLAGS.items():
        if options.get(flag) is True:
            return kind
    return None


def prepare_class(name: str, definition: Mapping[str, Any]) -> NodeClass:
    """Read one object_info entry; tolerant of odd shapes (custom nodes serve what they like)."""
    input_section = definition.get("input")
    input_section = input_section if isinstance(input_section, dict) else {}
    has_dynamic = False
    uploads: dict[str, str] = {}
    for category in ("required", "optional"):
        for input_name, spec in _entries(input_section, category).items():
            input_type, options = _spec_parts(spec)
            has_dynamic = has_dynamic or (isinstance(input_type, str) and input_type in DYNAMIC_TYPES)
            kind = _upload_kind(options)
            if kind is not None:
                uploads[input_name] = kind
    outputs = definition.get("output")
    outputs = outputs if isinstance(outputs, list | tuple) else []
    return NodeClass(
        name=name,
        definition=definition,
        outputs=list(outputs) if _is_v3(definition) else tuple(outputs),
        output_node=definition.get("output_node") is True,
        static_inputs=None if has_dynamic else expand_inputs(input_section, {})[0],
        validator=KNOWN_VALIDATORS.get(name) or _upload_validator(name, input_section, uploads),
        upload_inputs=uploads,
    )


def _upload_validator(
    name: str, section: Mapping[str, Any], uploads: dict[str, str]
) -> CustomValidator | None:
    # A custom node with an upload combo: check the file like LoadImage does instead of the folder listing.
    for input_name, kind in uploads.items():
        spec = _entries(section, "required").get(input_name) or _entries(section, "optional").get(input_name)
        input_type, _ = _spec_parts(spec)
        if isinstance(input_type, list) or input_type == COMBO_TYPE:
            return CustomValidator(
                f"{name}.VALIDATE_INPUTS",
                args=frozenset({input_name}),
                file_input=input_name,
                file_message=f"Invalid {kind} file: {{}}",
                file_ignore=frozenset({"none"}) if kind == "3D model" else frozenset(),
            )
    return None


class _Expansion:
    """Collects the declared inputs the way ComfyUI's get_finalized_class_inputs does."""

    __slots__ = ("dynamic", "live", "optional", "required")

    def __init__(self, live: Any) -> None:
        self.live = live
        self.required: dict[str, Any] = {}  # full input name -> spec
        self.optional: dict[str, Any] = {}
        self.dynamic = False  # ComfyUI's "v3_data": set once a dynamic input contributed names

    def add(self, category: str, name: str, spec: Any) -> None:
        target = self.required if category == "required" else self.optional
        target[name] = spec

    def parse(self, sections: Mapping[str, Any], prefix: tuple[str, ...]) -> None:
        for category, entries in sections.items():
            if category not in ("required", "optional") or not isinstance(entries, dict):
                continue  # hidden inputs are never validated
            for name, spec in entries.items():
                input_type, _ = _spec_parts(spec)
                path = (*prefix, name)
                if input_type == AUTOGROW_TYPE:
                    self._autogrow(spec, path)
                elif input_type in (DYNAMIC_COMBO_TYPE, DYNAMIC_SLOT_TYPE):
                    self._selected(category, spec, path)
                else:
                    self.add(category, ".".join(path), spec)
                    self.dynamic = self.dynamic or bool(prefix)

    def _autogrow(self, spec: Any, path: tuple[str, ...]) -> None:
        template = spec[1]["template"]
        if "names" in template:
            names = list(template["names"])
        else:
            names = [f"{template['prefix']}{i}" for i in range(template.get("max", 10))]
        minimum = template.get("min", 1)
        template_spec, template_required = _template_input(template["input"])
        for index, name in enumerate(names):
            category = "required" if index < minimum and template_required else "optional"
            self.add(category, ".".join((*path, name)), template_spec)
        self.dynamic = True  # ComfyUI always records dynamic paths (or their default) for an autogrow

    def _selected(self, category: str, spec: Any, path: tuple[str, ...]) -> None:
        # A dynamic combo contributes the inputs of its selected option; a dynamic slot its inputs once set.
        full_name = ".".join(path)
        if not _contains(self.live, full_name):
            return
        if spec[0] == DYNAMIC_COMBO_TYPE:
            key = self.live[full_name]
            option = next((o for o in spec[1].get("options", []) if o.get("key") == key), None)
            if option is None:
                return
            children = option.get("inputs") or {}
        else:
            children = spec[1].get("inputs") or {}
        self.parse(children, path)
        self.add(category, full_name, spec)
        self.dynamic = True

    def result(self) -> tuple[InputDef, ...]:
        # ComfyUI looks an input up in "required" first, so a name in both counts as required.
        defs = [_input_def(name, True, spec) for name, spec in self.required.items()]
        defs += [
            _input_def(name, False, spec) for name, spec in self.optional.items() if name not in self.required
        ]
        return tuple(defs)


def _contains(live: Any, key: str) -> bool:
    # Malformed live inputs expand to nothing here; the input checks then report them.
    return isinstance(live, dict) and key in live


def _template_input(sections: Mapping[str, Any]) -> tuple[Any, bool]:
    for category, entries in sections.items():
        if entries:
            return next(iter(entries.values())), category == "required"
    raise ValueError("autogrow template without an input")


def _input_def(name: str, required: bool, spec: Any) -> InputDef:
    input_type, options = _spec_parts(spec)
    return InputDef(name, required, input_type, options)


def expand_inputs(input_section: Mapping[str, Any], live: Any) -> tuple[tuple[InputDef, ...], bool]:
    """Declared inputs (required first, in declaration order) for these live values."""
    expansion = _Expansion(live)
    expansion.parse(input_section, ())
    return expansion.result(), expansion.dynamic


# Prepared classes, shared by all calls: keyed by the identity of the object_info entry (kept alive by the
# cache, so the id cannot be reused). Entries are read as immutable: replace a class's definition rather than
# restructuring it in place (option lists edited in place are still seen, they are not copied).
_PREPARED: dict[int, tuple[Mapping[str, Any], NodeClass]] = {}
_PREPARED_LIMIT = 16_384


def prepared_class(name: str, definition: Mapping[str, Any]) -> NodeClass:
    hit = _PREPARED.get(id(definition))
    if hit is not None and hit[0] is definition and hit[1].name == name:
        return hit[1]
    prepared = prepare_class(name, definition)
    if len(_PREPARED) >= _PREPARED_LIMIT:
        _PREPARED.clear()
    _PREPARED[id(definition)] = (definition, prepared)
    return prepared


class Catalogue:
    """The node classes of one object_info mapping, looked up once per validation call."""

    __slots__ = ("_classes", "object_info")

    def __init__(self, object_info: Mapping[str, Any]) -> None:
        self.object_info = object_info
        self._classes: dict[str, NodeClass | None] = {}

    def get(self, class_type: Any) -> NodeClass | None:
        if not isinstance(class_type, str):
            return None
        try:
            return self._classes[class_type]
        except KeyError:
            definition = self.object_info.get(class_type)
            prepared = prepared_class(class_type, definition) if isinstance(definition, dict) else None
            self._classes[class_type] = prepared
            return prepared
