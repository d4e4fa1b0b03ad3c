"""Which of a prompt's file inputs exist among the caller's own files.

A file input names `name`, `sub/dir/name` or an annotated form (`name [output]`); the annotation selects
the folder (input by default), so a user's earlier outputs can be inputs. Only the caller's files are
consulted: another user's upload of the same name does not exist for this caller.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from database.repositories.results import ResultRepository

ANNOTATIONS = {" [input]": "input", " [output]": "output", " [temp]": "temp"}


@dataclass(frozen=True, slots=True)
class FileRef:
    type: str
    subfolder: str
    filename: str


def parse_file_ref(value: str, default_type: str = "input") -> FileRef | None:
    """The file a widget value names, or None when it cannot name one of the caller's files."""
    name, kind = value, default_type
    for suffix, annotated in ANNOTATIONS.items():
        if name.endswith(suffix):
            name, kind = name[: -len(suffix)], annotated
            break
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts) or "\x00" in name:
        return None
    return FileRef(kind, "/".join(parts[:-1]), parts[-1])


async def existing_file_values(session: AsyncSession, user_id: uuid.UUID, values: Iterable[str]) -> set[str]:
    """The subset of widget values that name an existing file of the user."""
    found: set[str] = set()
    repo = ResultRepository(session)
    for value in set(values):
        ref = parse_file_ref(value)
        if (
            ref is not None
            and await repo.get_file(user_id, ref.type, ref.subfolder, ref.filename) is not None
        ):
            found.add(value)
    return found
