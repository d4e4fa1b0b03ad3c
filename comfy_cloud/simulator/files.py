"""The simulator's input/output/temp directories and ComfyUI's file naming rules.

Rules imitated (protocol reference §2.3, §3.5, §3.6):
- annotated names `"x.png [output]"` pick the directory; `"sub/dir/x.png"` picks a subfolder;
- uploads keep identical files, rename different bytes to `name (1).ext`, overwrite on request;
- saved images are `<prefix>_<counter:05>_.png`, the counter continuing after the highest existing one.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

from comfy_cloud.simulator.config import SimulatorConfig

FILE_TYPES = ("input", "output", "temp")
ANNOTATIONS = {" [input]": "input", " [output]": "output", " [temp]": "temp"}


class Dirs:
    def __init__(self, config: SimulatorConfig) -> None:
        self.base = config.base_dir.resolve()
        self.input = self.base / "input"
        self.output = self.base / "output"
        self.temp = self.base / "temp"
        self.user = self.base / "user"

    def prepare(self) -> None:
        """Create the directories; the temp dir is wiped, as ComfyUI does at startup."""
        shutil.rmtree(self.temp, ignore_errors=True)
        for path in (self.input, self.output, self.temp, self.user):
            path.mkdir(parents=True, exist_ok=True)

    def by_type(self, kind: str) -> Path | None:
        return {"input": self.input, "output": self.output, "temp": self.temp}.get(kind)


def split_annotation(name: str, default: str) -> tuple[str, str]:
    """`"x.png [output]"` → (`"x.png"`, `"output"`); names without a suffix keep `default`."""
    for suffix, kind in ANNOTATIONS.items():
        if name.endswith(suffix):
            return name[: -len(suffix)], kind
    return name, default


def inside(base: Path, path: Path) -> bool:
    """True if `path` (already absolute) lies within `base`, compared on normalised paths."""
    return os.path.commonpath((str(base), os.path.abspath(path))) == str(base)


def input_file_path(dirs: Dirs, name: str) -> Path | None:
    """Where LoadImage reads `name` from (annotation and subfolders honoured); None if outside."""
    bare, kind = split_annotation(name, "input")
    base = dirs.by_type(kind)
    assert base is not None
    path = Path(os.path.abspath(base / bare))
    return path if inside(base, path) else None


def input_file_exists(dirs: Dirs, name: str) -> bool:
    path = input_file_path(dirs, name)
    return path is not None and path.is_file()


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def upload_target(folder: Path, filename: str, data: bytes, overwrite: bool) -> tuple[str, bool]:
    """The name to store an upload under and whether it must be written (§3.6)."""
    if overwrite:
        return filename, True
    stem, ext = os.path.splitext(filename)
    name, n = filename, 1
    while (folder / name).exists():
        if _digest((folder / name).read_bytes()) == _digest(data):
            return name, False
        name = f"{stem} ({n}){ext}"
        n += 1
    return name, True


def _expand_prefix(prefix: str, width: int, height: int) -> str:
    """ComfyUI's %width%/%height%/%year%… substitutions in filename prefixes."""
    if "%" not in prefix:
        return prefix
    now = time.localtime()
    values = {
        "%width%": str(width),
        "%height%": str(height),
        "%year%": str(now.tm_year),
        "%month%": f"{now.tm_mon:02}",
        "%day%": f"{now.tm_mday:02}",
        "%hour%": f"{now.tm_hour:02}",
        "%minute%": f"{now.tm_min:02}",
        "%second%": f"{now.tm_sec:02}",
    }
    for key, value in values.items():
        prefix = prefix.replace(key, value)
    return prefix


def _scan_counter(folder: Path, filename: str) -> int:
    """1 + the highest counter of existing `<filename>_<digits>_…` files (1 when none)."""
    best = 0
    plen = len(filename)
    for name in os.listdir(folder):
        if len(name) <= plen or os.path.normcase(name[:plen]) != os.path.normcase(filename):
            continue
        if name[plen] != "_":
            continue
        try:
            digits = int(name[plen + 1 :].split("_")[0])
        except ValueError:
            digits = 0
        best = max(best, digits)
    return best + 1


class _Counters:
    """Next counters per (folder, filename), valid while the folder is unchanged since our last save.

    ComfyUI lists the folder on every save; so do we whenever someone else touched it, but a benchmark
    writing thousands of images into one folder must not pay a growing listdir per prompt.
    """

    def __init__(self) -> None:
        self._known: dict[tuple[str, str], tuple[int, int]] = {}  # -> (next counter, folder mtime_ns)

    def next(self, folder: Path, filename: str) -> int:
        try:
            mtime = folder.stat().st_mtime_ns
        except FileNotFoundError:
            folder.mkdir(parents=True, exist_ok=True)
            return 1
        known = self._known.get((str(folder), os.path.normcase(filename)))
        if known is not None and known[1] == mtime:
            return known[0]
        return _scan_counter(folder, filename)

    def saved(self, folder: Path, filename: str, next_counter: int) -> None:
        self._known[(str(folder), os.path.normcase(filename))] = (next_counter, folder.stat().st_mtime_ns)


COUNTERS = _Counters()


def save_image_path(prefix: str, output_dir: Path, width: int, height: int) -> tuple[Path, str, int, str]:
    """(folder, filename stem, first counter, subfolder) for SaveImage/PreviewImage."""
    prefix = _expand_prefix(prefix, width, height)
    subfolder = os.path.dirname(os.path.normpath(prefix))
    filename = os.path.basename(os.path.normpath(prefix))
    folder = Path(os.path.join(output_dir, subfolder))
    folder_abs = os.path.abspath(folder)
    common = os.path.commonpath((str(output_dir), folder_abs))
    if common != str(output_dir):
        # A plain Exception, so execution_error reports exception_type "Exception" like ComfyUI.
        raise Exception(
            "**** ERROR: Saving image outside the output folder is not allowed."
            f"\n full_output_folder: {folder_abs}"
            f"\n         output_dir: {output_dir}"
            f"\n         commonpath: {common}"
        )
    return folder, filename, COUNTERS.next(folder, filename), subfolder
