"""create_app() with its own resources: the PostgreSQL broadcaster, the real dispatcher client, the
configured storage. One pass through the running service: ready, submit, and the event on a socket."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import httpx
import websockets

from database.engine import Database
from database.job_states import JobStatus
from database.repositories.users import UserRepository
from services.ingest.app import create_app
from services.ingest.config import IngestSettings
from tests.ingest.core.conftest import PROMPT, SECRET, add_job, register_catalogue, serve


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_the_service_with_its_own_resources(
    db: Database, database_url: str, tmp_path: Path, object_info_small: dict[str, Any]
) -> None:
    settings = IngestSettings(
        database_url=database_url,
        secret_key=SECRET,
        broadcast_url=None,  # PostgreSQL LISTEN/NOTIFY
        dispatcher_url=f"http://127.0.0.1:{_free_port()}",  # nobody listens: nudges are lost, harmlessly
        storage_url=f"file://{tmp_path}",
        ingest_dev_mode=False,
    )
    await register_catalogue(db, object_info_small)
    async with db.session() as session:
        users = UserRepository(session)
        user = await users.get_or_create("svc")
        key = (await users.create_api_key(user.id)).key
    app = create_app(settings)
    async with app.router.lifespan_context(app), serve(app) as port:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}) as client:
            ready = await client.get("/ready")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"database": True, "broadcast": True}
            url = f"ws://127.0.0.1:{port}/ws?token={key}"
            async with websockets.connect(url, open_timeout=10) as ws:
                assert json.loads(await ws.recv())["type"] == "status"
                response = await client.post("/prompt", json={"prompt": PROMPT})
                assert response.status_code == 200, response.text
                status = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert status == {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}
            assert (await client.get("/api/jobs")).json()["pagination"]["total"] == 1
            interrupt = await client.post("/api/interrupt")  # nothing running: no dispatcher call needed
            assert interrupt.status_code == 200
            running = await add_job(db, user.id, JobStatus.IN_PROGRESS)
            interrupt = await client.post("/api/interrupt")  # the dispatcher cannot be reached
            assert interrupt.status_code == 503
            assert interrupt.json() == {"error": "The dispatcher did not answer; try again"}
            cancel = await client.post(f"/api/jobs/{running}/cancel")
            assert cancel.status_code == 503 and cancel.json() == interrupt.json()
