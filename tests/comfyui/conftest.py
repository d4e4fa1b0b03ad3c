from __future__ import annotations

from typing import Any

import pytest

from .fixture_data import object_info


@pytest.fixture(scope="session")
def object_info_033() -> dict[str, Any]:
    return object_info("0.33.0")


@pytest.fixture(scope="session")
def object_info_0364() -> dict[str, Any]:
    return object_info("0.3.64")
