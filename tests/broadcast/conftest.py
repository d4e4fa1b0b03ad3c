"""Broadcast fixtures. PostgreSQL comes from the shared `database_url` fixture (tests/conftest.py):
a fresh migrated database per test, so each test also has its own NOTIFY namespace."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

# `integration` is not an installed package: make the repository root importable when pytest did not.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


@pytest.fixture
def channel() -> str:
    """A channel of its own per test (also isolates tests on a shared TEST_DATABASE_URL)."""
    return f"test_{uuid.uuid4().hex[:16]}"
