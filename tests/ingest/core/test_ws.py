"""/ws over a real server: ComfyUI's handshake, fan-out to all of a user's sockets, isolation between
users, binary previews by negotiated feature, and a slow socket that must not stall the others."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from comfy_cloud.broadcast.events import JOB_STATUS, PREVIEW, PROGRESS_TEXT, JobEvent
from comfy_cloud.comfyui.frames import decode_frame
from database.job_states import JobStatus
from tests.ingest.core.conftest import Caller, Env, MakeEnv, add_job, eventually, load_fixture, serve

CLIENT_FLAGS = {
    "supports_preview_metadata": True,
    "supports_manager_v4_ui": True,
    "supports_progress_text_metadata": True,
}
PNG = bytes.fromhex("89504e470d0a1a0a") + b"\x00" * 32


@pytest.fixture
async def port(env: Env) -> AsyncIterator[int]:
    async with serve(env.app) as bound:
        yield bound


@asynccontextmanager
async def connect(
    port: int,
    caller: Caller | None,
    client_id: str | None = None,
    *,
    via: str = "header",
    path: str = "/ws",
    rcvbuf: int | None = None,
    **options: Any,
) -> AsyncIterator[ClientConnection]:
    query = {}
    headers = {}
    if client_id is not None:
        query["clientId"] = client_id
    if caller is not None and via == "header":
        headers["X-API-Key"] = caller.key
    if caller is not None and via == "token":
        query["token"] = caller.key
    qs = "&".join(f"{k}={v}" for k, v in query.items())
    url = f"ws://127.0.0.1:{port}{path}" + (f"?{qs}" if qs else "")
    if rcvbuf is not None:
        # A small fixed receive buffer (no autotuning): a socket that stops reading fills up quickly.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        options["sock"] = sock
    async with websockets.connect(url, additional_headers=headers, open_timeout=10, **options) as ws:
        yield ws


async def recv_json(ws: ClientConnection, within: float = 5.0) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.recv(), within)
    assert isinstance(message, str), f"expected text, got {message[:16]!r}"
    return json.loads(message)


async def recv_binary(ws: ClientConnection, within: float = 5.0) -> bytes:
    message = await asyncio.wait_for(ws.recv(), within)
    assert isinstance(message, bytes), f"expected binary, got {message!r}"
    return message


async def connected(ws: ClientConnection, flags: dict[str, Any] | None = None) -> dict[str, Any]:
    """The on-connect status; with flags, negotiate and return after the server's reply."""
    status = await recv_json(ws)
    assert status["type"] == "status"
    if flags is not None:
        await ws.send(json.dumps({"type": "feature_flags", "data": flags}))
        reply = await recv_json(ws)
        assert reply["type"] == "feature_flags"
    return status


def event(
    caller: Caller, kind: str, data: dict[str, Any] | None = None, job: str = "j", blob: bytes | None = None
) -> JobEvent:
    return JobEvent(user_id=str(caller.id), job_id=job, type=kind, data=data or {}, blob=blob)


async def publish(env: Env, *events: JobEvent) -> None:
    await env.broadcaster.publish(list(events))


async def marker(env: Env, ws: ClientConnection, caller: Caller) -> None:
    """Publish a marker to `caller` and read up to it: everything sent before it has arrived."""
    token = uuid.uuid4().hex
    await publish(env, event(caller, "cc_test_marker", {"token": token}))
    while True:
        message = await asyncio.wait_for(ws.recv(), 5)
        if isinstance(message, str) and token in message:
            return
        raise AssertionError(f"unexpected message before the marker: {message[:200]!r}")


async def test_handshake_matches_comfyui(env: Env, alice: Caller, port: int) -> None:
    recorded = load_fixture("ws/feature-flags-negotiation-0.33.0.json")
    async with connect(port, alice) as a, connect(port, alice, "client-b-fixed-id") as b:
        status_a = await recv_json(a)
        assert status_a["type"] == "status" and set(status_a["data"]) == {"status", "sid"}
        assert len(status_a["data"]["sid"]) == 32 and int(status_a["data"]["sid"], 16) >= 0
        assert status_a["data"]["status"] == {"exec_info": {"queue_remaining": 0}}
        await a.send(json.dumps(recorded["client_A_first_message"]))
        reply = await recv_json(a)
        assert reply["type"] == "feature_flags"
        assert reply["data"]["supports_preview_metadata"] is True
        assert isinstance(reply["data"]["max_upload_size"], int)
        assert reply["data"] == (await alice.client.get("/api/features")).json()  # one object, both ways
        assert await recv_json(b) == recorded["messages"][2]["message"]  # status with the given sid


async def test_feature_flags_only_as_first_message(env: Env, alice: Caller, port: int) -> None:
    async with connect(port, alice, "lateflags") as d:
        assert (await recv_json(d))["data"]["sid"] == "lateflags"
        for sent in load_fixture("ws/feature-flags-negotiation-0.33.0.json")["client_D_messages_sent"]:
            await d.send(json.dumps(sent))
        client = next(iter(env.state.hub._clients[str(alice.id)]))
        await eventually(lambda: client.received == 2)
        await publish(env, event(alice, PREVIEW, {"node_id": "3", "image_type": "image/png"}, blob=PNG))
        frame = await recv_binary(d)  # no feature_flags reply came before it, and the preview is type 1
        assert struct.unpack(">II", frame[:8]) == (1, 2)


async def test_invalid_json_does_not_count_as_first_message(env: Env, alice: Caller, port: int) -> None:
    async with connect(port, alice) as ws:
        await recv_json(ws)
        await ws.send("{not json")
        await ws.send(b"\x00\x01")
        await ws.send(json.dumps({"type": "feature_flags", "data": {"supports_preview_metadata": True}}))
        assert (await recv_json(ws))["type"] == "feature_flags"


async def test_events_reach_all_sockets_of_the_owner_only(
    env: Env, alice: Caller, bob: Caller, port: int
) -> None:
    async with (
        connect(port, alice, "tab-1") as a1,
        connect(port, alice, "tab-2") as a2,
        connect(port, alice) as a3,
        connect(port, alice, "bobs-id", via="token") as a4,
        connect(port, bob, "tab-1") as b1,
    ):
        for ws in (a1, a2, a3, a4, b1):
            await connected(ws)
        executing = {"node": "2", "display_node": "2", "prompt_id": "p1"}
        await publish(
            env,
            event(alice, "executing", executing, job="p1"),
            event(alice, "executed", {"node": "2", "output": {}}),
        )
        for ws in (a1, a2, a3, a4):
            assert await recv_json(ws) == {"type": "executing", "data": executing}
            assert (await recv_json(ws))["type"] == "executed"
        await marker(env, b1, bob)  # bob's socket got nothing of alice's (same clientId or not)


async def test_message_sequence_is_relayed_in_order(env: Env, alice: Caller, port: int) -> None:
    recorded = load_fixture("ws/success-fresh-0.33.0.json")["messages"]
    sequence = [
        m["message"]
        for m in recorded
        if m["client"] == "A" and "message" in m and m["message"]["type"] != "status"
    ]
    async with connect(port, alice) as ws:
        await connected(ws)
        await publish(env, *(event(alice, m["type"], m["data"], job="82b2f8e9") for m in sequence))
        for expected in sequence:
            assert await recv_json(ws) == expected


async def test_status_carries_the_users_own_queue_count(
    env: Env, alice: Caller, bob: Caller, port: int
) -> None:
    await add_job(env.db, alice.id)
    await add_job(env.db, alice.id, JobStatus.IN_PROGRESS)
    await add_job(env.db, alice.id, JobStatus.COMPLETED)
    for _ in range(3):
        await add_job(env.db, bob.id)
    async with connect(port, alice) as a, connect(port, bob) as b:
        assert (await connected(a))["data"]["status"] == {"exec_info": {"queue_remaining": 2}}
        assert (await connected(b))["data"]["status"] == {"exec_info": {"queue_remaining": 3}}
        relayed = {"status": {"exec_info": {"queue_remaining": 77}}}  # a worker's own count: rewritten
        await publish(env, event(alice, JOB_STATUS, {"status": "pending"}), event(alice, "status", relayed))
        expected = {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 2}}}}
        assert await recv_json(a) == expected
        # A second status frame may follow, or may have been superseded while queued (same count).
        token = uuid.uuid4().hex
        await publish(env, event(alice, "cc_test_marker", {"token": token}))
        while token not in (text := await asyncio.wait_for(a.recv(), 5)):
            assert json.loads(text) == expected
        await marker(env, b, bob)


async def test_submitting_sends_status_to_the_owners_sockets(env: Env, alice: Caller, port: int) -> None:
    async with connect(port, alice) as ws:
        await connected(ws)
        response = await alice.client.post(
            "/api/prompt", json={"prompt": load_fixture("workflows/basic_invert.json")}
        )
        assert response.status_code == 200, response.text
        assert await recv_json(ws) == {
            "type": "status",
            "data": {"status": {"exec_info": {"queue_remaining": 1}}},
        }


async def test_previews_type_1_or_4_by_negotiation(env: Env, alice: Caller, port: int) -> None:
    metadata = {
        "node_id": "3", "prompt_id": "p-1", "display_node_id": "3", "parent_node_id": None,
        "real_node_id": "3", "image_type": "image/png",
    }  # fmt: skip
    async with connect(port, alice) as legacy, connect(port, alice) as modern:
        await connected(legacy)
        await connected(modern, CLIENT_FLAGS)
        await publish(env, event(alice, PREVIEW, metadata, job="p-1", blob=PNG))
        old = await recv_binary(legacy)
        assert old == struct.pack(">II", 1, 2) + PNG
        new = await recv_binary(modern)
        encoded = json.dumps(metadata).encode()
        assert new == struct.pack(">II", 4, len(encoded)) + encoded + PNG
        assert decode_frame(new).metadata == metadata

        jpeg = {"node_id": "3", "image_type": "image/jpeg"}
        await publish(env, event(alice, PREVIEW, jpeg, job="p-2", blob=b"\xff\xd8\xff\xe0"))
        assert struct.unpack(">II", (await recv_binary(legacy))[:8]) == (1, 1)
        frame = decode_frame(await recv_binary(modern))
        assert frame.event_type == 4 and frame.metadata == {**jpeg, "prompt_id": "p-2"}


async def test_progress_text_is_binary_type_3(env: Env, alice: Caller, port: int) -> None:
    recorded = next(
        m["binary"]
        for m in load_fixture("ws/success-fresh-0.33.0.json")["messages"]
        if m.get("binary", {}).get("event_type") == 3
    )
    import base64

    async with connect(port, alice) as legacy, connect(port, alice) as modern:
        await connected(legacy)
        await connected(modern, CLIENT_FLAGS)
        await publish(env, event(alice, PROGRESS_TEXT, {"node_id": "6"}, blob=recorded["text"].encode()))
        for ws in (legacy, modern):
            assert await recv_binary(ws) == base64.b64decode(recorded["frame_base64"])


async def test_internal_events_are_not_relayed(env: Env, alice: Caller, port: int) -> None:
    async with connect(port, alice) as ws:
        await connected(ws)
        await publish(env, event(alice, "cc.something_internal", {"secret": 1}))
        await publish(env, JobEvent(user_id="not-a-uuid", job_id="x", type="executing", data={}))
        await marker(env, ws, alice)


async def test_reconnect_replays_the_running_node(env: Env, alice: Caller, port: int) -> None:
    running = await add_job(env.db, alice.id, JobStatus.IN_PROGRESS)
    finished = await add_job(env.db, alice.id, JobStatus.COMPLETED)
    async with connect(port, alice) as first:
        await connected(first)
        await publish(
            env,
            event(
                alice,
                "executing",
                {"node": "2", "display_node": "2", "prompt_id": str(running)},
                job=str(running),
            ),
            event(
                alice,
                "executing",
                {"node": "9", "display_node": "9", "prompt_id": str(finished)},
                job=str(finished),
            ),
        )
        await recv_json(first)
        await recv_json(first)  # the hub has seen both
    async with connect(port, alice, "again") as second:
        status = await recv_json(second)
        assert status["data"]["sid"] == "again"
        assert status["data"]["status"] == {"exec_info": {"queue_remaining": 1}}
        assert await recv_json(second) == {
            "type": "executing",
            "data": {"node": "2"},
        }  # not the finished job's
        await publish(
            env, event(alice, "executing", {"node": None, "prompt_id": str(running)}, job=str(running))
        )
        await recv_json(second)
    async with connect(port, alice) as third:
        await connected(third)
        await marker(env, third, alice)  # no replay once the job left its node


async def test_unauthenticated_socket_is_refused_with_401(env: Env, port: int) -> None:
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(port, None):
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body) == {
        "code": "unauthorized",
        "message": "Authentication required: pass ?token=<API key or ID token>",
    }
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token=cc_wrong", open_timeout=10):
            pass


async def test_api_ws_alias(env: Env, alice: Caller, port: int) -> None:
    async with connect(port, alice, path="/api/ws", via="token") as ws:
        await connected(ws)


async def test_slow_socket_does_not_stall_the_others(make_env: MakeEnv) -> None:
    async with make_env(ws_send_queue=32, ws_send_timeout=2.0) as env:
        alice = await env.caller("alice")
        bob = await env.caller("bob")
        async with (
            serve(env.app) as port,
            connect(port, alice, "fast") as fast,
            connect(port, alice, "slow", max_queue=1, rcvbuf=32768, compression=None) as slow,
            connect(port, bob) as other,
        ):
            for ws in (fast, slow, other):
                await connected(ws)
            big = "x" * 100_000
            previews = [
                event(
                    alice,
                    PREVIEW,
                    {"node_id": "1", "image_type": "image/png"},
                    blob=PNG + b"\0" * 200_000,
                )
                for _ in range(40)
            ]
            messages = [
                event(alice, "executed", {"node": "1", "output": {"text": [big]}}) for _ in range(200)
            ]
            token = uuid.uuid4().hex
            end = event(alice, "cc_test_marker", {"token": token})
            executed = previews_seen = 0

            async def read_fast() -> None:
                nonlocal executed, previews_seen
                while True:
                    message = await asyncio.wait_for(fast.recv(), 10)
                    if isinstance(message, bytes):
                        previews_seen += 1  # previews may be dropped for a socket that lags
                    elif token in message:
                        return
                    else:
                        executed += 1

            reader = asyncio.create_task(read_fast())
            # Previews first, as a run produces them: one publish() reaches the outboxes at once, so
            # the fast socket gets the time to send some before the big messages crowd them out.
            await publish(env, *previews)
            await eventually(lambda: previews_seen > 0)
            await publish(env, *messages, end)
            await reader  # the fast socket got everything that matters while the slow one did not read
            assert executed == len(messages)
            assert previews_seen > 0
            await marker(env, other, bob)
            hub = env.state.hub
            await eventually(lambda: hub.sockets_of(alice.id) == 1, within=15)  # the slow one is closed
            with pytest.raises(websockets.ConnectionClosed):
                while True:  # drain what it had buffered, then see the close
                    await asyncio.wait_for(slow.recv(), 10)
            assert slow.close_code == 1013
