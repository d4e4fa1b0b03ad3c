"""Access to the recorded ComfyUI traffic in tests/fixtures/comfyui (see its README.md)."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "comfyui"
VERSIONS = ("0.33.0", "0.3.64")
STYLE = {"0.33.0": "0.33", "0.3.64": "0.3"}

# Files that were in the recording servers' input folders (uploads made during the recordings).
INPUT_FILES = frozenset({"probe.png", "probe (1).png", "probe_upload.png"})

# The 0.33.0 recordings also used two test-only nodes that are not in object_info (README.md).
_TEST_ONLY_NODES = {
    "ProbeSleep": {
        "input": {
            "required": {
                "image": ["IMAGE", {}],
                "seconds": ["FLOAT", {"default": 2.0, "min": 0.0, "max": 600.0}],
            }
        },
        "output": ["IMAGE"],
        "output_node": False,
    },
    "ProbeFail": {
        "input": {"required": {"image": ["IMAGE", {}], "message": ["STRING", {"default": "probe failure"}]}},
        "output": ["IMAGE"],
        "output_node": False,
    },
}


def load(relative: str) -> Any:
    return json.loads((FIXTURES / relative).read_text())


@functools.cache
def object_info(version: str) -> dict[str, Any]:
    """The recorded node catalogue (1.6 MB for 0.33.0), parsed once per test session."""
    catalogue = load(f"object_info-{version}.json")
    if version == "0.33.0":
        catalogue.update(_TEST_ONLY_NODES)
    return catalogue


def input_file_exists(class_type: str, name: str) -> bool:
    return name in INPUT_FILES


def error_fixture_files() -> list[str]:
    return sorted(str(p.relative_to(FIXTURES)) for p in (FIXTURES / "errors").glob("*/*.json"))


def version_of(document: dict[str, Any]) -> str:
    return document["_about"]["comfyui_version"]


def _walk_prompt_posts(node: Any, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        request = node.get("request")
        if (
            isinstance(request, dict)
            and request.get("method") == "POST"
            and str(request.get("path", "")).endswith("/prompt")
        ):
            yield path, node
        for key, value in node.items():
            yield from _walk_prompt_posts(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk_prompt_posts(value, f"{path}/{index}")


def recorded_prompt_posts() -> list[tuple[str, str, dict[str, Any]]]:
    """(version, "file#path", exchange) of every recorded POST /prompt with a JSON request and response."""
    found = []
    for file in sorted(FIXTURES.rglob("*.json")):
        relative = str(file.relative_to(FIXTURES))
        if relative.startswith("object_info"):
            continue
        document = json.loads(file.read_text())
        if not isinstance(document, dict) or "_about" not in document:
            continue
        for path, exchange in _walk_prompt_posts(document, ""):
            if "body" in exchange["request"] and "body" in exchange.get("response", {}):
                found.append((version_of(document), f"{relative}#{path or '/'}", exchange))
    return found


def without_tracebacks(value: Any) -> Any:
    """The body with every `traceback` list removed (ours point into our own code)."""
    if isinstance(value, dict):
        return {k: without_tracebacks(v) for k, v in value.items() if k != "traceback"}
    if isinstance(value, list):
        return [without_tracebacks(v) for v in value]
    return value


def tracebacks(value: Any) -> list[Any]:
    if isinstance(value, dict):
        found = [value["traceback"]] if "traceback" in value else []
        return found + [t for v in value.values() for t in tracebacks(v)]
    if isinstance(value, list):
        return [t for v in value for t in tracebacks(v)]
    return []
