"""`/ws` (and `/api/ws`): connect, feature-flag negotiation, reconnect notice (§4.1)."""

from __future__ import annotations

import json
import uuid

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from comfy_cloud.simulator.config import feature_flags
from comfy_cloud.simulator.responses import text
from comfy_cloud.simulator.state import SimState

NO_UPGRADE = 'No WebSocket UPGRADE hdr: None\n Can "Upgrade" only to "WebSocket".'


async def websocket_endpoint(ws: WebSocket) -> None:
    state: SimState = ws.app.state.sim
    sid = ws.query_params.get("clientId") or uuid.uuid4().hex
    await ws.accept()
    hub = state.hub  # keep this hub: a simulated restart replaces state.hub while we unwind
    client = hub.register(sid, ws)
    hub.send_to(client, "status", {"status": state.queue_info(), "sid": sid})
    executor = state.executor
    if executor.client_id == sid and executor.last_node_id is not None:
        # A reconnecting client learns which node runs; no prompt_id, no display_node (as recorded).
        hub.send_to(client, "executing", {"node": executor.last_node_id})
    first = True
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                break
            raw = message.get("text")
            if raw is None:
                continue  # binary frames from clients are ignored
            try:
                data = json.loads(raw)
            except ValueError:
                continue  # logged and ignored by ComfyUI; does not count as the first message
            if first and isinstance(data, dict) and data.get("type") == "feature_flags":
                flags = data.get("data", {})
                hub.set_flags(sid, flags if isinstance(flags, dict) else {})
                # Sent to whichever socket owns the sid now, as ComfyUI's send(..., sid) does.
                hub.send_json("feature_flags", feature_flags(state.config), sid)
            first = False
    finally:
        hub.unregister(client)


async def websocket_without_upgrade(request: Request) -> Response:
    return text(NO_UPGRADE, 400)
