"""Named SQL: each `-- name: x` block of a .sql file here is one query, loaded once at import."""

from __future__ import annotations

import re
from pathlib import Path

_BLOCK = re.compile(r"^-- name: (\w+)\n((?:--[^\n]*\n)*)(.*?)(?=^-- name: |\Z)", re.S | re.M)


def load_queries(filename: str) -> dict[str, str]:
    source = (Path(__file__).parent / filename).read_text()
    queries = {m.group(1): m.group(3).strip().rstrip(";") for m in _BLOCK.finditer(source)}
    if not queries:
        raise ValueError(f"no named queries in {filename}")
    return queries
