"""Failure injection (/_sim/...): restart, dropped sockets, run-time delays, stats."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path

import httpx
import pytest
from aiohttp.test_utils import TestServer

from comfy_cloud.simulator import SimulatorConfig, SimulatorServer, SimulatorThread, create_app
from comfy_cloud.simulator.responses import SIM
from tests.simulator.support import Recorder, fixture, is_type, sleep_prompt, submit


async def _until_refused(url: str) -> None:
    async def probe() -> None:
        while True:
            try:
                async with httpx.AsyncClient(base_url=url) as client:
                    await client.get("/api/prompt")
            except httpx.ConnectError:
                return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(probe(), 10)


async def _until_serving(url: str) -> httpx.Response:
    async def probe() -> httpx.Response:
        while True:
            try:
                async with httpx.AsyncClient(base_url=url) as client:
                    return await client.get("/api/queue")
            except httpx.ConnectError:
                await asyncio.sleep(0.02)

    return await asyncio.wait_for(probe(), 10)


async def test_restart_loses_everything_and_refuses_connections(sim: SimulatorServer) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as http, Recorder(sim.ws_url) as a:
        done = await submit(http, fixture("workflows/basic_invert.json"), client_id=a.sid)
        await a.wait_done(done)
        running = await submit(http, sleep_prompt(60), client_id=a.sid)
        await submit(http, sleep_prompt(1), client_id=a.sid)
        await a.wait_for(lambda f: is_type(f, "executing") and f["data"]["node"] == "2")
        started = time.monotonic()
        response = await http.post("/_sim/restart", json={"down_seconds": 0.5})
        assert response.json() == {"restarting": True, "down_seconds": 0.5}
        await _until_refused(sim.url)  # the listener is closed: connection refused, like a dead process
        queue = await _until_serving(sim.url)
        assert time.monotonic() - started >= 0.5
    assert a.closed and not any(is_type(f, "execution_interrupted") for f in a.frames)
    assert queue.json() == {"queue_running": [], "queue_pending": []}
    async with httpx.AsyncClient(base_url=sim.url) as http, Recorder(sim.ws_url, "again") as b:
        assert (await http.get("/api/history")).json() == {}
        assert (await http.get(f"/api/jobs/{running}")).status_code == 404
        assert b.frames[0]["data"]["status"] == {"exec_info": {"queue_remaining": 0}}
        # The restarted server works, and its counter starts again at 0.
        again = await http.post(
            "/api/prompt", json={"prompt": fixture("workflows/basic_invert.json"), "client_id": "again"}
        )
        assert again.json()["number"] == 0
        await b.wait_done(again.json()["prompt_id"])
        stats = (await http.get("/_sim/stats")).json()
    assert stats["restarts"] == 1


async def test_drop_sockets_keeps_executing(sim: SimulatorServer) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as http:
        a = await Recorder(sim.ws_url, "dropme").__aenter__()
        b = await Recorder(sim.ws_url).__aenter__()
        prompt_id = await submit(http, sleep_prompt(0.3), client_id="dropme")
        await a.wait_for(lambda f: is_type(f, "executing") and f["data"]["node"] == "2")
        assert (await http.post("/_sim/drop_sockets")).json() == {"dropped": 2}
        for recorder in (a, b):
            await asyncio.wait_for(recorder._reader, 10)  # type: ignore[arg-type]
            assert (
                recorder._ws is not None and recorder._ws.protocol.close_rcvd is None
            )  # abrupt: no close frame
        async with Recorder(sim.ws_url, "dropme") as again:
            await again.wait_done(prompt_id)  # the prompt went on and its end reaches the new socket
        entry = (await http.get(f"/api/history/{prompt_id}")).json()[prompt_id]
        assert entry["status"]["status_str"] == "success"
        assert (await http.get("/_sim/stats")).json()["sockets_dropped"] == 2


async def test_config_changes_node_delay_at_run_time(sim: SimulatorServer) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as http, Recorder(sim.ws_url) as a:
        response = await http.post(
            "/_sim/config", json={"node_delay": 0.1, "class_delays": {"SaveImage": 0.2}}
        )
        assert response.json() == {"node_delay": 0.1, "class_delays": {"SaveImage": 0.2}, "preview_size": 32}
        started = time.monotonic()
        prompt_id = await submit(http, fixture("workflows/basic_invert.json"), client_id=a.sid)
        await a.wait_done(prompt_id)
        assert time.monotonic() - started >= 0.1 + 0.1 + 0.2  # two nodes at 0.1 s, SaveImage at 0.2 s
        stats = (await http.get("/_sim/stats")).json()
    assert stats["node_delay"] == 0.1 and stats["class_delays"] == {"SaveImage": 0.2}
    assert stats["prompts_executed"] == 1 and stats["prompts_queued"] == 1
    assert stats["simulator"] is True and stats["version"] == "0.33.0"


async def test_stats_show_sockets_and_queue(sim: SimulatorServer) -> None:
    async with httpx.AsyncClient(base_url=sim.url) as http, Recorder(sim.ws_url, "x1") as a:
        running = await submit(http, sleep_prompt(60), client_id="x1")
        await a.wait_for(lambda f: is_type(f, "executing") and f["data"]["node"] == "2")
        pending = await submit(http, sleep_prompt(0.1))
        stats = (await http.get("/_sim/stats")).json()
        assert stats["running"] == running and stats["pending"] == [pending]
        assert stats["registered_sids"] == ["x1"] and stats["sockets"] == 1 and stats["queue_remaining"] == 2
        await http.post("/api/interrupt")
        await a.wait_done(running)


async def test_cli_prints_a_simulator_banner_and_serves(tmp_path: Path) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "comfy_cloud.simulator",
        "--port",
        "0",
        "--base-dir",
        str(tmp_path),
        "--version",
        "0.3.64",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        banner = ""
        while "Listening on" not in banner:
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line, "the simulator exited before printing its banner"
            banner += line.decode()
        assert "NOT ComfyUI" in banner
        url = re.search(r"Listening on (http://\S+)", banner).group(1)  # type: ignore[union-attr]
        async with httpx.AsyncClient(base_url=url) as http:
            stats = (await http.get("/system_stats")).json()["system"]
        assert stats["comfyui_version"] == "0.3.64" and stats["argv"][:3] == ["main.py", "--port", "0"]
    finally:
        process.terminate()
        await process.wait()


async def test_restart_without_a_server_answers_503_while_down(tmp_path: Path) -> None:
    """A bare app (no SimulatorServer to close the listener) refuses requests with 503 instead."""
    app = create_app(SimulatorConfig(base_dir=tmp_path))
    state = app[SIM]
    # TestServer starts and stops the app (so the executor) but sets no restart hook.
    async with (
        TestServer(app, host="127.0.0.1") as server,
        httpx.AsyncClient(base_url=str(server.make_url(""))) as http,
    ):
        assert (await http.post("/_sim/restart", json={"down_seconds": 0.3})).status_code == 200
        await asyncio.sleep(0.05)
        refused = await http.get("/api/prompt")
        assert refused.status_code == 503 and refused.content == b""
        await asyncio.sleep(0.35)
        assert (await http.get("/api/prompt")).json() == {"exec_info": {"queue_remaining": 0}}
    assert state.counters["restarts"] == 1


def test_simulator_thread_serves_synchronous_callers(tmp_path: Path) -> None:
    with SimulatorThread(SimulatorConfig(base_dir=tmp_path, version="0.3.64")) as url:
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(url + "/features").json() == {
            "supports_preview_metadata": True,
            "max_upload_size": 104857600,
        }
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/features")
