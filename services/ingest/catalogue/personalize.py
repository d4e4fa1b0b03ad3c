"""Per-user combo lists of the node catalogue (design notes, "Files and names").

A worker's `/object_info` lists *its* input directory in the combos of loader nodes (`LoadImage.image`,
`LoadAudio.audio`, ...): content-addressed copies of other users' uploads, and whatever else lies there.
Those lists are replaced for each caller by the caller's own input files, filtered the way ComfyUI filters
its input directory for that node; never another user's names, never the worker's.

Which inputs list files is recognised from the node definition: combos flagged `image_upload`,
`video_upload`, `audio_upload` or `file_upload` (custom loaders use the same flags), plus a few core
nodes that list input files or folders without a flag. Combos filled by the frontend from a route
(`remote`, e.g. `LoadImageOutput` from `/internal/files/output`) have no list to replace.
"""

from __future__ import annotations

import copy
import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from services.ingest.files.names import media_kind

# Where the inference worker puts users' inputs inside its ComfyUI (CONTRIBUTING, "Names").
WORKER_INPUT_DIR = "cc-inputs"
_3D_EXTENSIONS = (".gltf", ".glb", ".obj", ".fbx", ".stl", ".ply", ".spz", ".splat", ".ksplat")


@dataclass(frozen=True, slots=True)
class InputFile:
    subfolder: str
    filename: str

    @property
    def path(self) -> str:
        return posixpath.join(self.subfolder, self.filename) if self.subfolder else self.filename


Rule = Callable[[list[InputFile], list[Any]], list[str]]


def _top_level(kinds: frozenset[str]) -> Rule:
    def rule(files: list[InputFile], _: list[Any]) -> list[str]:
        return sorted(f.filename for f in files if not f.subfolder and media_kind(f.filename) in kinds)

    return rule


def _latents(files: list[InputFile], _: list[Any]) -> list[str]:
    return sorted(f.filename for f in files if not f.subfolder and f.filename.endswith(".latent"))


def _models_3d(files: list[InputFile], original: list[Any]) -> list[str]:
    # Load3D lists input/3d recursively; its "none" entry is not a file and stays.
    found = sorted(
        f.path
        for f in files
        if (f.subfolder + "/").startswith("3d/") and f.filename.lower().endswith(_3D_EXTENSIONS)
    )
    return [o for o in original if o == "none"] + found


def _folders(files: list[InputFile], _: list[Any]) -> list[str]:
    folders: set[str] = set()
    for f in files:
        parts = f.subfolder.split("/") if f.subfolder else []
        folders.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(folders)


_IMAGES = _top_level(frozenset({"image"}))
_FLAG_RULES: dict[str, Rule] = {
    "image_upload": _IMAGES,
    "video_upload": _top_level(frozenset({"video"})),
    "audio_upload": _top_level(frozenset({"audio", "video"})),
    "file_upload": _models_3d,
}
_NAMED_RULES: dict[tuple[str, str], Rule] = {
    ("LoadImageMask", "image"): _IMAGES,
    ("LoadLatent", "latent"): _latents,
    ("LoadImageDataSetFromFolder", "folder"): _folders,
    ("LoadImageTextDataSetFromFolder", "folder"): _folders,
    ("LoadVideoDataSetFromFolder", "folder"): _folders,
    ("LoadVideoTextDataSetFromFolder", "folder"): _folders,
}


@dataclass(frozen=True, slots=True)
class FileCombo:
    class_type: str
    section: str  # required | optional
    name: str
    rule: Rule


def combo_options(spec: Any) -> list[Any] | None:
    """The option list of a combo input spec: V1 `[[options], opts]` or V3 `["COMBO", {"options": []}]`."""
    if not isinstance(spec, list) or not spec:
        return None
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        options = spec[1].get("options")
        return options if isinstance(options, list) else None
    return None


def _rule(class_type: str, name: str, spec: Any) -> Rule | None:
    if combo_options(spec) is None:
        return None
    named = _NAMED_RULES.get((class_type, name))
    if named is not None:
        return named
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if opts.get("remote"):
        return None
    return next((rule for flag, rule in _FLAG_RULES.items() if opts.get(flag)), None)


def find_file_combos(object_info: Mapping[str, Any]) -> list[FileCombo]:
    """Every combo input of the catalogue that lists input files (computed once per catalogue)."""
    found: list[FileCombo] = []
    for class_type, node in object_info.items():
        inputs = node.get("input") if isinstance(node, dict) else None
        for section in ("required", "optional"):
            specs = inputs.get(section) if isinstance(inputs, dict) else None
            for name, spec in (specs or {}).items() if isinstance(specs, dict) else ():
                rule = _rule(class_type, name, spec)
                if rule is not None:
                    found.append(FileCombo(class_type, section, name, rule))
    return found


def personalize(
    object_info: Mapping[str, Any], combos: Iterable[FileCombo], files: list[InputFile]
) -> dict[str, Any]:
    """class_type -> NodeDef for the classes whose combos list files, with the caller's files in them.
    Only those node definitions are copied; the shared catalogue is never modified."""
    changed: dict[str, Any] = {}
    for combo in combos:
        node = changed.get(combo.class_type)
        if node is None:
            node = changed[combo.class_type] = copy.deepcopy(object_info[combo.class_type])
        spec = node["input"][combo.section][combo.name]
        options = combo.rule(files, combo_options(spec) or [])
        if isinstance(spec[0], list):
            spec[0] = options
        else:
            spec[1]["options"] = options
    return changed


def strip_worker_inputs(node: Any) -> Any:
    """A node definition without the worker's internal input names in any combo (a copy if changed)."""
    inputs = node.get("input") if isinstance(node, dict) else None
    if not isinstance(inputs, dict):
        return node
    node = copy.deepcopy(node)
    for specs in node["input"].values():
        for spec in specs.values() if isinstance(specs, dict) else ():
            options = combo_options(spec)
            if options is not None:
                options[:] = [o for o in options if not _is_worker_input(o)]
    return node


def _is_worker_input(option: Any) -> bool:
    return isinstance(option, str) and (
        option == WORKER_INPUT_DIR or option.startswith(WORKER_INPUT_DIR + "/")
    )
