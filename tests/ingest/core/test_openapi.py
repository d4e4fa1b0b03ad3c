"""The OpenAPI document lists every route of ingest with its response model."""

from __future__ import annotations

from services.ingest.app import create_app
from services.ingest.config import IngestSettings

# Routes whose success answer is ComfyUI's empty body (nothing to model).
EMPTY_BODIES = {("post", "/queue"), ("post", "/interrupt"), ("post", "/history")}
CORE = [
    ("get", "/prompt"), ("post", "/prompt"), ("get", "/queue"), ("post", "/queue"), ("post", "/interrupt"),
    ("get", "/history"), ("post", "/history"), ("get", "/history/{prompt_id}"),
    ("get", "/api/jobs"), ("get", "/api/jobs/{job_id}"), ("post", "/api/jobs/{job_id}/cancel"),
    ("post", "/api/jobs/cancel"), ("get", "/api/job/{job_id}/status"), ("get", "/api/history_v2"),
    ("get", "/api/history_v2/{prompt_id}"),
]  # fmt: skip


def test_every_core_route_is_documented_with_a_model() -> None:
    app = create_app(
        IngestSettings(database_url="postgresql://u:p@127.0.0.1:5432/db", broadcast_url="memory")
    )
    paths = app.openapi()["paths"]
    for method, path in CORE:
        variants = [path] if path.startswith("/api/j") or "history_v2" in path else [path, "/api" + path]
        for variant in variants:
            operation = paths[variant][method]
            assert "401" in operation["responses"], variant
            if (method, path) in EMPTY_BODIES:
                continue
            schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
            assert schema, variant
            if method == "post" and path in ("/prompt", "/api/jobs/cancel"):
                assert operation["requestBody"]["content"]["application/json"]["schema"], variant


def test_every_json_route_declares_a_response_schema() -> None:
    app = create_app(
        IngestSettings(database_url="postgresql://u:p@127.0.0.1:5432/db", broadcast_url="memory")
    )
    missing = []
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            if (method, path.removeprefix("/api")) in EMPTY_BODIES:
                continue
            ok = (
                operation["responses"].get("200")
                or operation["responses"].get("201")
                or operation["responses"].get("204")
            )
            if not ok:
                missing.append((method, path))
    assert missing == []
