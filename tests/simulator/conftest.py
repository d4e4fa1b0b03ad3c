"""A fresh simulator per test, served on 127.0.0.1:<free port>, plus an HTTP client for it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from comfy_cloud.simulator import SimulatorConfig, SimulatorServer
from tests.simulator.support import FIXTURES, Start


@pytest.fixture
async def start_sim(tmp_path: Path) -> AsyncIterator[Start]:
    """start_sim(version=..., node_delay=..., full_catalogue=True, ...) -> a running SimulatorServer."""
    servers: list[SimulatorServer] = []

    async def start(full_catalogue: bool = False, **options: Any) -> SimulatorServer:
        version = options.get("version", "0.33.0")
        if full_catalogue:
            options["object_info_path"] = FIXTURES / f"object_info-{version}.json"
        config = SimulatorConfig(base_dir=tmp_path / f"sim{len(servers)}", **options)
        server = SimulatorServer(config)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


@pytest.fixture
async def sim(start_sim: Start) -> SimulatorServer:
    return await start_sim()


@pytest.fixture
async def legacy(start_sim: Start) -> SimulatorServer:
    return await start_sim(version="0.3.64")


@pytest.fixture
async def http(sim: SimulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.url, timeout=30) as client:
        yield client
