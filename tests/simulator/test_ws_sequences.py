"""WebSocket message sequences of the recorded scenarios (tests/fixtures/comfyui/ws/), reproduced.

Each test replays what the recorder sent and compares every socket's frames with the recording through
`canon` (types, order, addressing, node ids, states, progress values, binary headers; ids and clocks
abstracted). Where the recording had nodes cached, the simulator (which caches nothing) is projected onto
the recorded nodes; where a run length depends on when an interrupt lands, progress steps are folded.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json

import httpx
from PIL import Image

from comfy_cloud.comfyui import frames
from comfy_cloud.simulator import SimulatorServer
from tests.simulator.support import (
    FRONTEND_FLAGS,
    METADATA_FLAGS,
    Recorder,
    Start,
    cached_nodes,
    canon_sequence,
    client_for,
    collapse_steps,
    fixture,
    is_type,
    png,
    recorded,
    submit,
    upload,
)


async def test_success_fresh_0_33(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    rec = fixture("ws/success-fresh-0.33.0.json")
    await upload(http, "probe.png", png(8, 8, (10, 200, 30)))
    async with (
        Recorder(sim.ws_url, first=[FRONTEND_FLAGS]) as a,
        Recorder(sim.ws_url, "client-b-fixed-id") as b,
    ):
        await a.wait_for(lambda f: is_type(f, "feature_flags"))
        body = rec["request"]["body"]
        prompt_id = await submit(http, body["prompt"], client_id=a.sid, extra_data=body["extra_data"])
        await a.wait_done(prompt_id)
        await b.wait_status(0, start=1)

    assert canon_sequence(a.frames) == canon_sequence(
        [m["message"] for m in rec["connect_messages"] if m["client"] == "A"] + recorded(rec["messages"], "A")
    )
    assert canon_sequence(b.frames) == canon_sequence(
        [m["message"] for m in rec["connect_messages"] if m["client"] == "B"] + recorded(rec["messages"], "B")
    )
    # The progress-text frame is byte-identical and reaches the bystander too (always broadcast).
    text_frame = next(
        m["binary"]["frame_base64"]
        for m in rec["messages"]
        if "binary" in m and m["binary"]["event_type"] == 3
    )
    assert base64.b64decode(text_frame) in b.frames
    previews = [frames.decode_frame(f) for f in a.frames if isinstance(f, bytes) and f[3] == 4]
    assert len(previews) == 2
    assert all(p.metadata and p.metadata["prompt_id"] == prompt_id for p in previews)
    assert Image.open(io.BytesIO(previews[0].payload)).format == "JPEG"


async def test_success_fresh_0_3_64_with_view(legacy: SimulatorServer) -> None:
    rec = fixture("ws/success-fresh-0.3.64.json")
    async with client_for(legacy) as http, Recorder(legacy.ws_url) as a:
        prompt_id = await submit(http, rec["request"]["body"]["prompt"], client_id=a.sid)
        await a.wait_done(prompt_id)
        assert canon_sequence(a.frames) == canon_sequence(recorded(rec["messages"], "A"))

        view = await http.get("/view?filename=test_00001_.png&subfolder=&type=output")
        assert view.status_code == 200 and view.headers["content-type"] == "image/png"
        assert "x-content-type-options" not in view.headers  # nosniff arrived in 0.28
        image = Image.open(io.BytesIO(view.content))
        assert (image.size, image.mode, image.getpixel((0, 0))) == ((64, 64), "RGB", (255, 255, 255))
        assert json.loads(image.text["prompt"]) == rec["request"]["body"]["prompt"]
        assert len(view.content) == rec["view"]["response"]["body_length"]  # same PNG, byte for byte in size
        for variant in rec["view_variants"]:
            response = await http.get(variant["request"]["path"])
            assert response.status_code == variant["response"]["status"]
            assert response.headers.get("content-type") == variant["response"]["content_type"]
            if response.status_code != 200:
                assert response.content == b""


async def test_runtime_error_0_33(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    rec = fixture("ws/runtime-error-0.33.0.json")
    async with (
        Recorder(sim.ws_url, first=[FRONTEND_FLAGS]) as a,
        Recorder(sim.ws_url, "client-b-fixed-id") as b,
    ):
        prompt_id = await submit(http, rec["request"]["body"]["prompt"], client_id=a.sid)
        await a.wait_done(prompt_id)
        await b.wait_status(0, start=1)

    cached = cached_nodes(rec["messages"])
    assert canon_sequence(a.frames[2:], cached) == canon_sequence(recorded(rec["messages"], "A"), cached)
    assert canon_sequence(b.frames[1:]) == canon_sequence(recorded(rec["messages"], "B"))
    ours = next(f["data"] for f in a.frames if is_type(f, "execution_error"))
    theirs = next(
        m["message"]["data"] for m in rec["messages"] if m.get("message", {}).get("type") == "execution_error"
    )
    assert ours["exception_message"] == "boom\n" and ours["exception_type"] == "RuntimeError"
    assert ours["current_inputs"] == theirs["current_inputs"]  # the torch-style tensor text included
    assert sorted(ours["current_outputs"]) == ["1", "2", "3"]
    assert ours["traceback"] and all(isinstance(line, str) for line in ours["traceback"])

    entry = (await http.get(f"/api/history/{prompt_id}")).json()[prompt_id]
    assert entry["outputs"] == {} and entry["meta"] == {}
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
    assert entry["status"]["messages"][-1] == ["execution_error", ours]
    job = (await http.get(f"/api/jobs/{prompt_id}")).json()
    assert job["status"] == "failed" and job["execution_error"] == ours


async def test_runtime_error_0_3_64_save_outside(legacy: SimulatorServer) -> None:
    rec = fixture("ws/runtime-error-0.3.64.json")
    async with client_for(legacy) as http, Recorder(legacy.ws_url) as a:
        prompt_id = await submit(http, rec["request"]["body"]["prompt"], client_id=a.sid)
        await a.wait_done(prompt_id)
        history = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]

    cached = cached_nodes(rec["messages"])
    assert canon_sequence(a.frames, cached) == canon_sequence(recorded(rec["messages"], "A"), cached)
    ours = next(f["data"] for f in a.frames if is_type(f, "execution_error"))
    theirs = rec["history"]["response"]["body"][rec["response"]["body"]["prompt_id"]]["status"]["messages"][
        2
    ][1]
    assert ours["exception_message"].startswith(
        "**** ERROR: Saving image outside the output folder is not allowed."
    )
    assert ours["exception_message"].endswith("\n") and ours["exception_type"] == "Exception"
    assert ours["current_inputs"] == theirs["current_inputs"]  # tensor text, python-repr prompt, [None]
    assert history["outputs"] == {} and history["meta"] == {}
    assert history["prompt"][3] == {"client_id": a.sid}  # no create_time on 0.3.64
    assert [m[0] for m in history["status"]["messages"]] == [
        "execution_start",
        "execution_cached",
        "execution_error",
    ]


async def test_interrupt_targeted_0_33(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    rec = fixture("ws/interrupt-targeted-0.33.0.json")
    async with (
        Recorder(sim.ws_url, first=[FRONTEND_FLAGS]) as a,
        Recorder(sim.ws_url, "client-b-fixed-id") as b,
    ):
        prompt_id = await submit(http, rec["request"]["body"]["prompt"], client_id=a.sid)
        await a.wait_for(lambda f: is_type(f, "progress"))
        response = await http.post("/api/interrupt", json={"prompt_id": prompt_id})
        assert response.status_code == 200 and response.content == b""
        await a.wait_done(prompt_id)
        await b.wait_status(0, start=1)

    cached = cached_nodes(rec["messages"])
    ours = collapse_steps(canon_sequence(a.frames[2:], cached), "2")
    assert ours == collapse_steps(canon_sequence(recorded(rec["messages"], "A"), cached), "2")
    assert canon_sequence(b.frames[1:]) == canon_sequence(recorded(rec["messages"], "B"))
    entry = (await http.get(f"/api/history/{prompt_id}")).json()[prompt_id]
    assert entry["status"]["status_str"] == "error" and entry["status"]["completed"] is False
    assert entry["status"]["messages"][-1][0] == "execution_interrupted"
    assert (await http.get(f"/api/jobs/{prompt_id}")).json()["status"] == "cancelled"


async def test_interrupt_global_at_node_boundary_0_3_64(start_sim: Start) -> None:
    """A node without progress cannot be interrupted: the interrupt lands when the next node starts."""
    rec = fixture("ws/interrupt-0.3.64.json")
    server = await start_sim(version="0.3.64", class_delays={"ImageBlur": 0.5})
    prompt = json.loads(json.dumps(rec["request"]["body"]["prompt"]))
    prompt["1"]["inputs"].update(width=64, height=64)  # the order of messages does not depend on the size
    async with client_for(server) as http, Recorder(server.ws_url) as a:
        prompt_id = await submit(http, prompt, client_id=a.sid)
        await a.wait_for(lambda f: is_type(f, "executing") and f["data"]["node"] == "2")
        queue = (await http.get("/queue")).json()
        assert queue["queue_pending"] == [] and queue["queue_running"] == [
            [0, prompt_id, prompt, {"client_id": a.sid}, ["8"]]
        ]
        assert (await http.get("/prompt")).json() == {"exec_info": {"queue_remaining": 1}}
        assert (await http.post("/interrupt", json={})).status_code == 200
        await a.wait_done(prompt_id)
        entry = (await http.get(f"/history/{prompt_id}")).json()[prompt_id]

    assert canon_sequence(a.frames) == canon_sequence(recorded(rec["messages"], "A"))
    interrupted = next(f["data"] for f in a.frames if is_type(f, "execution_interrupted"))
    assert interrupted["node_id"] == "3" and sorted(interrupted["executed"]) == ["1", "2"]
    assert entry["outputs"] == {} and entry["status"]["status_str"] == "error"


async def test_binary_previews_legacy_vs_negotiated_0_3_64(legacy: SimulatorServer) -> None:
    rec = fixture("ws/binary-previews-0.3.64.json")
    legacy_run, negotiated_run = rec["runs"]
    async with client_for(legacy) as http:
        async with Recorder(legacy.ws_url) as a:
            prompt_id = await submit(http, legacy_run["request"]["body"]["prompt"], client_id=a.sid)
            await a.wait_done(prompt_id)
        assert canon_sequence(a.frames) == canon_sequence(recorded(legacy_run["messages"], "A"))
        for frame in (f for f in a.frames if isinstance(f, bytes)):
            decoded = frames.decode_frame(frame)
            assert (decoded.event_type, decoded.image_format) == (1, frames.PNG)
            image = Image.open(io.BytesIO(decoded.payload))
            assert image.size == (64, 64) and image.getpixel((0, 0)) == (0, 255, 255)

        async with Recorder(legacy.ws_url, first=[METADATA_FLAGS]) as a:
            await a.wait_for(lambda f: is_type(f, "feature_flags"))
            prompt_id = await submit(http, negotiated_run["request"]["body"]["prompt"], client_id=a.sid)
            await a.wait_done(prompt_id)
        cached = cached_nodes(negotiated_run["messages"])
        assert canon_sequence(a.frames, cached) == canon_sequence(
            recorded(negotiated_run["messages"], "A"), cached
        )
        binary = [f for f in a.frames if isinstance(f, bytes)]
        assert len(binary) == 2 and all(int.from_bytes(f[4:8], "big") == 165 for f in binary)
        assert frames.decode_frame(binary[0]).metadata == {
            "node_id": "3",
            "prompt_id": prompt_id,
            "display_node_id": "3",
            "parent_node_id": None,
            "real_node_id": "3",
            "image_type": "image/png",
        }
        assert (await http.get(f"/history/{prompt_id}")).json()[prompt_id]["outputs"] == {}


async def test_binary_previews_legacy_client_0_33(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    rec = fixture("ws/binary-previews-legacy-client-0.33.0.json")
    async with Recorder(sim.ws_url, "legacyB") as b, Recorder(sim.ws_url, first=[METADATA_FLAGS]) as a:
        await a.wait_for(lambda f: is_type(f, "feature_flags"))
        prompt_id = await submit(http, rec["request"]["body"]["prompt"], client_id="legacyB")
        await b.wait_done(prompt_id)
        await a.wait_status(0, start=2)
    assert canon_sequence(b.frames) == canon_sequence(recorded(rec["messages"], "B"))
    assert canon_sequence(a.frames) == canon_sequence(recorded(rec["messages"], "A"))
    jpeg = frames.decode_frame(next(f for f in b.frames if isinstance(f, bytes)))
    # ProbePreview's 32x32 image is *enlarged* to its max size 64 (ImageOps.contain), as in ComfyUI:
    # the recorded frame length (703 = 8 + 695) is exactly that of this 64x64 JPEG.
    assert jpeg.image_format == frames.JPEG and Image.open(io.BytesIO(jpeg.payload)).size == (64, 64)
    recorded_length = next(m["binary"]["length"] for m in rec["messages"] if "binary" in m)
    assert len(next(f for f in b.frames if isinstance(f, bytes))) == recorded_length


async def test_no_client_id_0_3_64(legacy: SimulatorServer) -> None:
    rec = fixture("ws/no-client-id-0.3.64.json")
    phase1, phase2 = rec["phase1_submitter"], rec["phase2_no_client_id"]
    async with client_for(legacy) as http, Recorder(legacy.ws_url) as a, Recorder(legacy.ws_url) as b:
        prompt = phase1["request"]["body"]["prompt"]
        prompt_id = await submit(http, prompt, client_id=a.sid)
        await a.wait_done(prompt_id)
        await b.wait_status(0, start=1)
        assert a.types() == phase1["submitter_message_types"]
        assert canon_sequence(b.frames) == canon_sequence(recorded(phase1["bystander_messages"], "B"))

        marks = len(a.frames), len(b.frames)
        await submit(http, phase2["request"]["body"]["prompt"])
        await a.wait_status(0, start=marks[0] + 1)
        await b.wait_status(0, start=marks[1] + 1)
    assert canon_sequence(a.frames[marks[0] :]) == canon_sequence(recorded(phase2["messages_client_A"], "A"))
    assert canon_sequence(b.frames[marks[1] :]) == canon_sequence(recorded(phase2["messages_client_B"], "B"))


async def test_no_client_id_previews_broadcast_0_33(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    rec = fixture("ws/no-client-id-0.33.0.json")
    async with Recorder(sim.ws_url, first=[METADATA_FLAGS]) as a, Recorder(sim.ws_url, "legacyB") as b:
        await a.wait_for(lambda f: is_type(f, "feature_flags"))
        marks = len(a.frames), len(b.frames)
        await submit(http, rec["request"]["body"]["prompt"])
        await a.wait_status(0, start=marks[0] + 1)
        await b.wait_status(0, start=marks[1] + 1)
    # Even the negotiated client A gets legacy type-1 previews: the target sid is None.
    assert canon_sequence(a.frames[marks[0] :]) == canon_sequence(recorded(rec["messages"], "A"))
    assert canon_sequence(b.frames[marks[1] :]) == canon_sequence(recorded(rec["messages"], "B"))


async def test_no_client_id_interrupt_0_33(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    rec = fixture("ws/no-client-id-interrupt-0.33.0.json")
    async with (
        Recorder(sim.ws_url, first=[FRONTEND_FLAGS]) as a,
        Recorder(sim.ws_url, "client-b-fixed-id") as b,
    ):
        await a.wait_for(lambda f: is_type(f, "feature_flags"))
        marks = len(a.frames), len(b.frames)
        await submit(http, rec["request"]["body"]["prompt"])
        await a.wait_for(lambda f: is_type(f, "progress"))
        assert (await http.post("/api/interrupt", json={})).status_code == 200
        await a.wait_status(0, start=marks[0] + 1)
        await b.wait_status(0, start=marks[1] + 1)
    for client, ours in (("A", a.frames[marks[0] :]), ("B", b.frames[marks[1] :])):
        expected = collapse_steps(canon_sequence(recorded(rec["messages"], client)), "2")
        assert collapse_steps(canon_sequence(ours), "2") == expected


async def _wait_unregistered(http: httpx.AsyncClient, sid: str) -> None:
    async def poll() -> None:
        # The server's registry is not observable from a client: poll the simulator's stats.
        while sid in (await http.get("/_sim/stats")).json()["registered_sids"]:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), 10)


async def test_reconnect_during_execution_0_33(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    rec = fixture("ws/reconnect-during-execution-0.33.0.json")
    sid = "client-b-fixed-id"
    b = Recorder(sim.ws_url, sid)
    async with b:
        prompt_id = await submit(http, rec["request"]["body"]["prompt"], client_id=sid)
        await b.wait_for(lambda f: is_type(f, "progress"))
    await _wait_unregistered(http, sid)
    async with Recorder(sim.ws_url, sid) as b2:
        await b2.wait_done(prompt_id)
    cached = cached_nodes(rec["messages"])
    assert b2.frames[:2] == [
        {"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 1}}, "sid": sid}},
        {"type": "executing", "data": {"node": "2"}},
    ]
    expected = collapse_steps(canon_sequence(recorded(rec["messages"], "B2"), cached), "2")
    assert collapse_steps(canon_sequence(b2.frames, cached), "2") == expected


async def test_duplicate_client_id_0_33(sim: SimulatorServer, http: httpx.AsyncClient) -> None:
    rec = fixture("ws/duplicate-clientid-0.33.0.json")
    phase1, phase2 = rec["phase1"], rec["phase2_after_C1_closed"]
    cached = cached_nodes(phase1["messages"])
    async with (
        Recorder(sim.ws_url, first=[FRONTEND_FLAGS]) as a,
        Recorder(sim.ws_url, "client-b-fixed-id") as b,
    ):
        await a.wait_for(lambda f: is_type(f, "feature_flags"))
        c1 = await Recorder(sim.ws_url, "dupX").__aenter__()
        async with Recorder(sim.ws_url, "dupX") as c2:
            prompt_id = await submit(http, phase1["request"]["body"]["prompt"], client_id="dupX")
            await c2.wait_done(prompt_id)
            await a.wait_status(0, start=2)
            await b.wait_status(0, start=1)
            assert canon_sequence(c2.frames, cached) == canon_sequence(
                recorded(phase1["messages"], "C2"), cached
            )

            await c1.close()  # C1's close unregisters dupX: C2 is now deaf
            await _wait_unregistered(http, "dupX")
            marks = len(a.frames), len(c2.frames), len(b.frames)
            await submit(http, phase2["request"]["body"]["prompt"], client_id="dupX")
            await a.wait_status(0, start=marks[0] + 1)
            await b.wait_status(0, start=marks[2] + 1)
            await asyncio.sleep(0.2)  # a negative check: anything sent to C2 would have arrived by now
            assert c2.frames[marks[1] :] == []
    assert canon_sequence(c1.frames) == canon_sequence(recorded(phase1["messages"], "C1"))
    assert canon_sequence(a.frames[marks[0] :]) == canon_sequence(recorded(phase2["messages"], "A"))
    assert canon_sequence(b.frames[1 : marks[2]]) == canon_sequence(recorded(phase1["messages"], "B"))
    assert canon_sequence(b.frames[marks[2] :]) == canon_sequence(recorded(phase2["messages"], "B"))


async def test_feature_flags_negotiation_0_33(sim: SimulatorServer) -> None:
    rec = fixture("ws/feature-flags-negotiation-0.33.0.json")
    async with (
        Recorder(sim.ws_url, first=[rec["client_A_first_message"]]) as a,
        Recorder(sim.ws_url, "client-b-fixed-id") as b,
        Recorder(sim.ws_url, "lateflags", first=rec["client_D_messages_sent"]) as d,
        Recorder(sim.ws_url, "badjson") as e,
    ):
        await a.wait_for(lambda f: is_type(f, "feature_flags"))
        await e._ws.send("{not json")  # type: ignore[union-attr]  # ignored; does not count as first
        await e.send(METADATA_FLAGS)
        await e.wait_for(lambda f: is_type(f, "feature_flags"))
        await asyncio.sleep(0.2)  # negative checks below
    assert canon_sequence(a.frames) == canon_sequence(recorded(rec["messages"], "A"))
    assert a.frames[1] == next(
        m["message"] for m in rec["messages"] if m["message"]["type"] == "feature_flags"
    )
    assert canon_sequence(b.frames) == canon_sequence(recorded(rec["messages"], "B"))
    assert canon_sequence(d.frames) == canon_sequence(recorded(rec["client_D_messages"], "D"))
    assert len(a.sid or "") == 32


async def test_legacy_feature_flags_reply(legacy: SimulatorServer) -> None:
    async with Recorder(legacy.ws_url, first=[METADATA_FLAGS]) as a:
        reply = await a.wait_for(lambda f: is_type(f, "feature_flags"))
    assert reply["data"] == fixture("http/features-0.3.64.json")["response"]["body"]  # the old, short set
