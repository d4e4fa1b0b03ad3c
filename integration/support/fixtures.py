"""Pytest fixtures for the support code; import the ones you need into a conftest.py:

from integration.support.fixtures import firebase_auth_env, firebase_emulator  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from integration.support.firebase_emulator import PROJECT_ID, auth_emulator


@pytest.fixture(scope="session")
def firebase_emulator() -> Iterator[str]:
    """The real Firebase Auth emulator (project demo-comfy-cloud), once per session: "127.0.0.1:<port>"."""
    with auth_emulator(PROJECT_ID) as host:
        yield host


@pytest.fixture
def firebase_auth_env(firebase_emulator: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point firebase-admin (FIREBASE_AUTH_EMULATOR_HOST) and FIREBASE_PROJECT_ID at the emulator."""
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", firebase_emulator)
    monkeypatch.setenv("FIREBASE_PROJECT_ID", PROJECT_ID)
    return firebase_emulator
