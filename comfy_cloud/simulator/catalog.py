"""The node catalogue served by `/object_info` and used for validation.

By default it holds only the nodes the simulator can execute (`nodes.json`, copied from the recorded
`/object_info` of each version). With `object_info_path` it serves a full dump instead, merged with the
simulator's own nodes; nodes it cannot execute then fail at run time, as a missing model would.
"""

from __future__ import annotations

import copy
import json
import mimetypes
from functools import cache
from pathlib import Path
from typing import Any

from comfy_cloud.simulator.config import SimulatorConfig

NODES_FILE = Path(__file__).with_name("nodes.json")
# Combo inputs whose options are the live listing of the input directory (computed per request).
INPUT_FILE_COMBOS = ("LoadImage", "LoadImageMask")


@cache
def _builtin(version: str) -> dict[str, Any]:
    return json.loads(NODES_FILE.read_text())[version]


def _image_files(input_dir: Path) -> list[str]:
    """Top-level image files of the input dir, sorted, as ComfyUI lists them for LoadImage."""
    try:
        names = [p.name for p in input_dir.iterdir() if p.is_file()]
    except FileNotFoundError:
        return []
    return sorted(n for n in names if (mimetypes.guess_type(n)[0] or "").startswith("image/"))


class Catalog:
    """Node definitions for one simulated server, with the input-file combos kept current."""

    def __init__(self, config: SimulatorConfig) -> None:
        self._input_dir = config.dir("input")
        nodes = copy.deepcopy(_builtin(config.version))
        if config.object_info_path is not None:
            full = json.loads(Path(config.object_info_path).read_text())
            nodes = {**full, **{k: v for k, v in nodes.items() if k not in full}}
        self._nodes: dict[str, Any] = nodes
        self._listing: list[str] | None = None
        self._mtime = -2
        self._serialized: bytes = b""

    def _refresh(self) -> None:
        # The listing changes only when the input dir does; its mtime spares a listdir per request.
        try:
            mtime = self._input_dir.stat().st_mtime_ns
        except FileNotFoundError:
            mtime = -1
        if mtime == self._mtime and self._listing is not None:
            return
        self._mtime = mtime
        listing = _image_files(self._input_dir)
        if listing == self._listing:
            return
        self._listing = listing
        for name in INPUT_FILE_COMBOS:
            entry = self._nodes.get(name)
            if entry is not None:
                entry["input"]["required"]["image"][0] = list(listing)
        # json.dumps with default separators: byte-compatible with aiohttp's json_response.
        self._serialized = json.dumps(self._nodes).encode()

    def all(self) -> dict[str, Any]:
        """The current catalogue (do not mutate)."""
        self._refresh()
        return self._nodes

    def serialized(self) -> bytes:
        self._refresh()
        return self._serialized

    def get(self, class_type: str) -> dict[str, Any] | None:
        """One definition, without re-listing the input dir (the executor asks this per node)."""
        return self._nodes.get(class_type)
