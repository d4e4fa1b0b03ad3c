"""GET /ws and /api/ws: ComfyUI's WebSocket protocol (protocol reference §4) over the caller's jobs.

On connect: `status` with the socket's sid (its clientId, or a fresh uuid4 hex) and the caller's queue
count, then `executing {node}` for each of the caller's running jobs whose current node is known. If the
client's first message is `feature_flags`, it gets the server's flags back and, when it declared
`supports_preview_metadata`, previews as binary type 4 (else type 1). Every event of every job of the
caller reaches all of the caller's sockets, whatever their clientId.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from typing import Any

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy.ext.asyncio import AsyncSession

from database.repositories.jobs import JobRepository
from database.repositories.users import UserRepository
from services.ingest.auth.dependencies import websocket_user
from services.ingest.catalogue.system import DEFAULT_MAX_CONCURRENT_JOBS, server_features
from services.ingest.errors import ErrorStyle, error_body
from services.ingest.state import IngestState, get_state
from services.ingest.ws.client import Client, status_message
from services.ingest.ws.outbox import Frame

log = logging.getLogger(__name__)

router = APIRouter(tags=["websocket"])

MAX_OUTBOX_BYTES = 16 * 1024 * 1024  # soft bound: previews beyond it are dropped (hard: 8 times)


async def server_feature_flags(
    state: IngestState, session: AsyncSession, user_id: uuid.UUID
) -> dict[str, Any]:
    """The same flags GET /features answers this user (ComfyUI sends one object both ways)."""
    limit = getattr(state.settings, "default_max_concurrent_jobs", DEFAULT_MAX_CONCURRENT_JOBS)
    user = await UserRepository(session).get(user_id)
    if user is not None and user.max_concurrent_jobs is not None:
        limit = user.max_concurrent_jobs
    return server_features(max_upload_size=state.settings.max_upload_size, max_concurrent_jobs=limit)


@router.websocket("/ws")
@router.websocket("/api/ws")
async def websocket_endpoint(websocket: WebSocket) -> None:
    state = get_state(websocket)
    user = await websocket_user(websocket)
    if user is None:
        await _deny(websocket)
        return
    await websocket.accept()
    sid = websocket.query_params.get("clientId") or uuid.uuid4().hex
    client = Client(
        websocket,
        user.id,
        sid,
        max_frames=state.settings.ws_send_queue,
        max_bytes=MAX_OUTBOX_BYTES,
        send_timeout=state.settings.ws_send_timeout,
    )
    state.hub.register(client)  # subscribe first, then snapshot: no event falls in between
    try:
        if await _send_snapshot(state, client):
            await _serve(state, client)
    except Exception:
        log.exception("WebSocket of user %s failed", user.id)
        client.close_code = 1011
        client.stuck.set()
    finally:
        state.hub.unregister(client)
    if client.stuck.is_set():
        await client.close(client.close_code)


async def _deny(websocket: WebSocket) -> None:
    body = error_body(ErrorStyle.CLOUD, 401, "Authentication required: pass ?token=<API key or ID token>")
    try:
        await websocket.send_denial_response(JSONResponse(body, status_code=401))
    except RuntimeError:  # the server cannot answer a handshake with a response: close instead
        await websocket.close(code=1008)


async def _send_snapshot(state: IngestState, client: Client) -> bool:
    async with state.database.session() as session:
        repo = JobRepository(session)
        remaining = await repo.queue_remaining(client.user_id)
        active = {str(job_id) for job_id in await repo.active_ids(client.user_id)}
        client.server_flags = await server_feature_flags(state, session, client.user_id)
    if not await client.send_now(Frame(text=status_message(remaining, client.sid))):
        return False
    for node in state.hub.running.of_user(client.user_id, active):
        # ComfyUI's replay carries only the node (no prompt_id, no display_node).
        if not await client.send_now(Frame(text=json.dumps({"type": "executing", "data": {"node": node}}))):
            return False
    return True


async def _serve(state: IngestState, client: Client) -> None:
    tasks = [
        asyncio.create_task(client.write_forever()),
        asyncio.create_task(client.watch_sends()),
        asyncio.create_task(_read(state, client)),
        asyncio.create_task(client.stuck.wait()),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _read(state: IngestState, client: Client) -> None:
    """Read until the client leaves; only a first `feature_flags` message means anything."""
    first = True
    while True:
        message = await client.websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        first = _handle(state, client, message.get("text"), first)
        client.received += 1


def _handle(state: IngestState, client: Client, text: str | None, first: bool) -> bool:
    """Handle one client message; returns whether the next one still counts as the first. Like ComfyUI,
    binary messages and text that is not a JSON object are ignored and do not count."""
    if text is None:
        return first
    try:
        data = json.loads(text)
    except ValueError:
        return first
    if not isinstance(data, dict):
        return first
    if first and data.get("type") == "feature_flags":
        flags = data.get("data")
        client.supports_preview_metadata = (
            isinstance(flags, dict) and flags.get("supports_preview_metadata") is True
        )
        reply = json.dumps({"type": "feature_flags", "data": client.server_flags})
        client.offer(Frame(text=reply), front=True)
    return False


@router.get(
    "/ws",
    include_in_schema=True,
    response_class=PlainTextResponse,
    responses={400: {"description": "Not a WebSocket upgrade (connect with a WebSocket client)"}},
)
async def websocket_without_upgrade() -> PlainTextResponse:
    """The WebSocket endpoint requested as plain HTTP (ComfyUI answers 400 the same way)."""
    return PlainTextResponse(
        'No WebSocket UPGRADE hdr: None\n Can "Upgrade" only to "WebSocket".', status_code=400
    )
