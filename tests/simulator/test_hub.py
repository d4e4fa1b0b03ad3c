"""The hub writes WebSocket frames itself (in bursts): every length encoding must reach clients intact."""

from __future__ import annotations

import json

from comfy_cloud.simulator import SimulatorServer
from tests.simulator.support import Recorder


async def test_frames_of_every_length_class_arrive_in_order(sim: SimulatorServer) -> None:
    sizes = [0, 1, 125, 126, 65535, 65536, 300_000]  # 7-bit, 16-bit and 64-bit payload lengths
    async with Recorder(sim.ws_url, "frames") as client:
        hub = sim.state.hub
        for size in sizes:
            hub.send_bytes(bytes([size % 251]) * size, "frames")
        hub.send_json("big", {"text": "x" * 70_000}, "frames")
        await client.wait_for(lambda f: isinstance(f, dict) and f.get("type") == "big")
    binary = [f for f in client.frames if isinstance(f, bytes)]
    assert [len(f) for f in binary] == sizes
    assert all(f == bytes([len(f) % 251]) * len(f) for f in binary)
    assert json.dumps(client.frames[-1]["data"]) == json.dumps({"text": "x" * 70_000})
