"""Instance identity: a UUID is taken as is; a name (a StatefulSet pod name) maps to a stable UUID."""

from __future__ import annotations

import uuid

from services.inference.config import InferenceSettings


def test_instance_id_accepts_a_uuid_or_a_stable_name() -> None:
    given = uuid.uuid4()
    assert InferenceSettings(database_url="postgresql://x@/y", instance_id=str(given)).instance_id == given
    first = InferenceSettings(database_url="postgresql://x@/y", instance_id="inference-0").instance_id
    again = InferenceSettings(database_url="postgresql://x@/y", instance_id="inference-0").instance_id
    other = InferenceSettings(database_url="postgresql://x@/y", instance_id="inference-1").instance_id
    assert first == again != other
