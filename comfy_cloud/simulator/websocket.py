"""`/ws` (and `/api/ws`): connect, feature-flag negotiation, reconnect notice (§4.1)."""

from __future__ import annotations

import json
import uuid

from aiohttp import WSMsgType, web

from comfy_cloud.simulator.config import feature_flags
from comfy_cloud.simulator.middleware import is_websocket_upgrade
from comfy_cloud.simulator.responses import sim_state, text

NO_UPGRADE = 'No WebSocket UPGRADE hdr: None\n Can "Upgrade" only to "WebSocket".'
MAX_MESSAGE = 16 * 1024 * 1024  # what the simulator accepted before (uvicorn's default ws_max_size)
ENDED = (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR)


async def websocket_endpoint(request: web.Request) -> web.StreamResponse:
    if not is_websocket_upgrade(request):
        return text(NO_UPGRADE, 400)  # plain HTTP on /ws, as aiohttp words it
    state = sim_state(request)
    # No server pings (ComfyUI sends none) and, as the simulator always did, no permessage-deflate (it
    # would cost CPU per message). The hub writes the data frames itself (see hub.py).
    ws = web.WebSocketResponse(compress=False, heartbeat=None, max_msg_size=MAX_MESSAGE)
    await ws.prepare(request)  # a bad handshake (version, key) raises aiohttp's 400
    sid = request.query.get("clientId") or uuid.uuid4().hex
    hub = state.hub  # keep this hub: a simulated restart replaces state.hub while we unwind
    client = hub.register(sid, ws, request.transport)
    hub.send_to(client, "status", {"status": state.queue_info(), "sid": sid})
    executor = state.executor
    if executor.client_id == sid and executor.last_node_id is not None:
        # A reconnecting client learns which node runs; no prompt_id, no display_node (as recorded).
        hub.send_to(client, "executing", {"node": executor.last_node_id})
    first = True
    try:
        while True:
            message = await ws.receive()
            if message.type in ENDED:
                break
            if message.type is not WSMsgType.TEXT:
                continue  # binary frames from clients are ignored
            try:
                data = json.loads(message.data)
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
    return ws
