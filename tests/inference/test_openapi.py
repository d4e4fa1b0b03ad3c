"""The inference service's OpenAPI document states every operation's success answer and lists every
route."""

from __future__ import annotations

from services.inference.app import create_app
from services.inference.config import InferenceSettings
from tests.openapi_support import duplicate_operation_ids, undocumented_answers, unexplained_routes


def test_every_route_is_documented_with_its_success_answer() -> None:
    app = create_app(InferenceSettings(database_url="postgresql://u:p@127.0.0.1:5432/db"))
    document = app.openapi()
    assert undocumented_answers(document) == []
    assert unexplained_routes(app) == []
    assert duplicate_operation_ids(document) == []
