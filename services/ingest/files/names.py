"""ComfyUI's file-name rules, without a file system: every path is a key of a user's `files` row.

ComfyUI checks paths against real directories (`os.path.commonpath`); here the same checks run on
strings. A subfolder is normalised the way the file system would resolve it (`a/./b/../c` -> `a/c`),
so `/view` finds what `/upload` stored whatever the spelling, and the inference worker (which splits
`"sub/dir/x.png"` on `/`, backslashes included) finds the same row.
"""

from __future__ import annotations

import mimetypes
import posixpath
from collections.abc import Iterator

from comfy_cloud.errors import BadRequest, NotFound
from services.ingest.errors import ComfyError

FILE_TYPES = ("input", "output", "temp")
# ComfyUI's annotations (`folder_paths.annotated_filepath`): the suffix selects the directory. ComfyUI
# tests `endswith("[output]")` and cuts one more character (the space), and so do we.
_ANNOTATIONS = (("[output]", "output"), ("[input]", "input"), ("[temp]", "temp"))

# Served as a download, never rendered: a user's file must not run script in our origin.
_DANGEROUS_TYPES = frozenset(
    {
        "text/html",
        "text/html-sandboxed",
        "application/xhtml+xml",
        "text/javascript",
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "text/css",
        "text/xml",
        "application/xml",
    }
)


class PathEscapes(ComfyError):
    """The subfolder leaves the user's directory."""

    status_code = 403


def split_annotation(name: str) -> tuple[str, str | None]:
    """`"x.png [output]"` -> (`"x.png"`, `"output"`); an unannotated name -> (name, None)."""
    for suffix, kind in _ANNOTATIONS:
        if name.endswith(suffix):
            return name[: -len(suffix) - 1], kind
    return name, None


def normalize_subfolder(subfolder: str) -> str | None:
    """The canonical form of a subfolder, or None when it escapes the type's directory."""
    if "\x00" in subfolder:
        return None
    path = subfolder.replace("\\", "/")
    if path.startswith("/"):
        return None  # os.path.join would discard the directory: ComfyUI's commonpath check fails
    resolved = posixpath.normpath(posixpath.join("/root", path))
    if resolved == "/root":
        return ""
    if not resolved.startswith("/root/"):
        return None
    return resolved[len("/root/") :]


def upload_location(subfolder: str, filename: str) -> tuple[str, str]:
    """(subfolder, filename) an upload is stored under; BadRequest when either escapes or is unusable."""
    folder = normalize_subfolder(subfolder)
    if folder is None:
        raise BadRequest("subfolder escapes the upload directory")
    if not filename or filename in {".", ".."} or any(c in filename for c in "/\\\x00"):
        # ComfyUI joins the name onto the folder: a separator would write elsewhere, `..` escapes.
        raise BadRequest("invalid file name")
    return folder, filename


def view_location(filename: str, type_: str, subfolder: str | None) -> tuple[str, str, str]:
    """(type, subfolder, filename) that `/view` reads, with ComfyUI's checks and statuses:
    400 for an empty or unsafe name or an unknown type, 403 for an escaping subfolder."""
    name, annotated = split_annotation(filename)
    if not name or name[0] == "/" or ".." in name or "\x00" in name:
        raise BadRequest("invalid file name")
    kind = annotated or type_
    if kind not in FILE_TYPES:
        raise BadRequest("unknown type")
    folder = ""
    if subfolder is not None:
        normalized = normalize_subfolder(subfolder)
        if normalized is None:
            raise PathEscapes()
        folder = normalized
    # ComfyUI keeps only the base name: "sub/x.png" is read from the folder itself.
    return kind, folder, posixpath.basename(name)


def candidate_names(filename: str) -> Iterator[str]:
    """`name.png`, `name (1).png`, `name (2).png`, ... (ComfyUI's renaming of a different upload)."""
    stem, ext = posixpath.splitext(filename)
    yield filename
    number = 1
    while True:
        yield f"{stem} ({number}){ext}"
        number += 1


def guess_type(filename: str) -> str | None:
    return mimetypes.guess_type(filename, strict=False)[0]


def is_dangerous(content_type: str) -> bool:
    """Types a browser would render as active content in our origin."""
    base = content_type.split(";", 1)[0].strip().lower()
    return base in _DANGEROUS_TYPES or base.endswith(("+xml", "/xml"))


def media_kind(filename: str) -> str | None:
    """`image`, `video`, `audio`, ... from the name, as ComfyUI's `filter_files_content_types`."""
    content_type = guess_type(filename)
    return content_type.split("/", 1)[0] if content_type else None


class FileNotFound(NotFound):
    """No such file for this user."""
