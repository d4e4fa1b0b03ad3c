"""Storage fixtures: every behaviour test runs on LocalStorage and on GCSStorage over a real emulator."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# `integration` is not an installed package: make the repository root importable when pytest did not.
_ROOT = str(Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from comfy_cloud.storage import LocalStorage, Storage  # noqa: E402
from integration.support.gcs_emulator import GCSEmulator, start_gcs_emulator  # noqa: E402

BUCKET = "comfy-cloud-test"


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSEmulator]:
    emulator = start_gcs_emulator(tmp_path_factory.mktemp("gcs-emulator"), buckets=[BUCKET])
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def gcs_bucket() -> str:
    return BUCKET


@pytest.fixture
def gcs_storage(
    gcs_emulator: GCSEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Storage]:
    from comfy_cloud.storage.gcs import GCSStorage

    # The client reads STORAGE_EMULATOR_HOST when it is created (lazily, on first use, in the test).
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.host)
    # A fresh prefix per test: content addressing would otherwise make tests see each other's objects.
    storage = GCSStorage(BUCKET, f"test-{uuid.uuid4().hex[:12]}", spool_dir=tmp_path)
    yield storage
    storage.close()


@pytest.fixture(params=["local", "gcs"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "objects")
    return request.getfixturevalue("gcs_storage")
