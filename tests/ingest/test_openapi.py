"""Ingest's OpenAPI document states every operation's success answer, leaves out only the bare aliases of
documented /api routes, and keeps its operation ids unique and stable."""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from services.ingest.app import create_app
from services.ingest.config import IngestSettings
from tests.openapi_support import (
    duplicate_operation_ids,
    operations,
    undocumented_answers,
    unexplained_routes,
)


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app(
        IngestSettings(database_url="postgresql://u:p@127.0.0.1:5432/db", broadcast_url="memory")
    )


def test_every_operation_documents_its_success_answer(app: FastAPI) -> None:
    assert undocumented_answers(app.openapi()) == []


def test_every_route_is_documented_or_the_bare_alias_of_a_documented_api_route(app: FastAPI) -> None:
    assert unexplained_routes(app) == []


def test_operation_ids_are_unique_and_stable(app: FastAPI) -> None:
    document = app.openapi()
    assert duplicate_operation_ids(document) == []
    ids = {key: operation["operationId"] for key, operation in operations(document).items()}
    # The prompt, queue and history routes are documented bare and under /api, as <endpoint>[_api]; the
    # jobs and Cloud routes as <endpoint>; the other ComfyUI routes (/api only) with FastAPI's default ids.
    assert ids[("POST", "/prompt")] == "post_prompt"
    assert ids[("POST", "/api/prompt")] == "post_prompt_api"
    assert ids[("GET", "/api/queue")] == "get_queue_api"
    assert ids[("POST", "/history")] == "post_history"
    assert ids[("GET", "/api/history/{prompt_id}")] == "get_history_item_api"
    assert ids[("GET", "/api/jobs")] == "list_jobs"
    assert ids[("POST", "/api/jobs/cancel")] == "cancel_many"
    assert ids[("GET", "/api/job/{job_id}/status")] == "job_status"
    assert ids[("GET", "/api/history_v2/{prompt_id}")] == "history_v2_item"
    assert ids[("GET", "/api/object_info")] == "object_info_api_object_info_get"
    assert ids[("GET", "/api/view")] == "view_api_view_get"
    assert ids[("POST", "/api/settings")] == "post_settings_api_settings_post"
    assert ids[("PATCH", "/internal/logs/subscribe")] == "subscribe_logs_internal_logs_subscribe_patch"
    assert ("GET", "/object_info") not in ids  # a hidden bare alias


def test_node_definitions_are_documented_without_being_applied(app: FastAPI) -> None:
    document = app.openapi()
    for path in ("/api/object_info", "/api/object_info/{node_class}"):
        schema = document["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema["additionalProperties"] == {"$ref": "#/components/schemas/NodeDef"}
    assert document["components"]["schemas"]["NodeDef"]["additionalProperties"] is True
