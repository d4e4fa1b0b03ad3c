"""A real GCS emulator (`gcp-storage-emulator` from PyPI) as a subprocess on a free 127.0.0.1 port.

A subprocess rather than the emulator's in-process thread: it keeps whole objects in memory while it
serves them, which would distort memory measurements of the process under test, and its blocking HTTP
server would share the GIL with the event loop.

    emulator = start_gcs_emulator(tmp_dir, buckets=["test-bucket"])
    os.environ["STORAGE_EMULATOR_HOST"] = emulator.host   # before creating a storage client
    ...
    emulator.stop()
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class GCSEmulator:
    host: str  # what STORAGE_EMULATOR_HOST must hold: "http://127.0.0.1:<port>"
    process: subprocess.Popen[bytes]
    data_dir: Path

    def create_bucket(self, name: str) -> None:
        response = httpx.post(f"{self.host}/storage/v1/b", json={"name": name}, timeout=10)
        if response.status_code not in (200, 409):
            raise RuntimeError(f"cannot create bucket {name}: {response.status_code} {response.text}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_gcs_emulator(
    data_dir: Path, *, buckets: tuple[str, ...] | list[str] = (), timeout: float = 30.0
) -> GCSEmulator:
    """Start the emulator storing under `data_dir` and wait until it answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    # The emulator cannot bind port 0 and report it, so pick a free port; retry if another process
    # takes it between the probe and the bind.
    for _attempt in range(3):
        port = _free_port()
        log = (data_dir / "emulator.log").open("ab")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gcp_storage_emulator",
                "--data-dir",
                str(data_dir),
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--quiet",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        emulator = GCSEmulator(host=f"http://127.0.0.1:{port}", process=process, data_dir=data_dir)
        if _wait_until_up(emulator, timeout):
            for bucket in buckets:
                emulator.create_bucket(bucket)
            return emulator
        emulator.stop()
    raise RuntimeError(f"the GCS emulator did not start; see {data_dir / 'emulator.log'}")


def _wait_until_up(emulator: GCSEmulator, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if emulator.process.poll() is not None:
            return False
        try:
            if httpx.get(f"{emulator.host}/", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    return False
