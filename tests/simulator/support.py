"""Helpers for driving the simulator like a ComfyUI client and comparing with the recordings."""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import websockets
from PIL import Image
from websockets.asyncio.client import ClientConnection

from comfy_cloud.comfyui import frames
from comfy_cloud.simulator import SimulatorServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "comfyui"
WAIT = 15.0  # generous: a missing message fails the test, a slow machine must not


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def workflow(name: str) -> dict[str, Any]:
    return fixture(f"workflows/{name}.json")


Frame = dict[str, Any] | bytes
Start = Callable[..., Awaitable[SimulatorServer]]  # the start_sim fixture


class Recorder:
    """A WebSocket client that records every frame it receives, in order."""

    def __init__(self, ws_url: str, client_id: str | None = None, first: list[dict[str, Any]] | None = None):
        self.url = ws_url + (f"?clientId={client_id}" if client_id else "")
        self.first = first or []
        self.frames: list[Frame] = []
        self.sid: str | None = None
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> Recorder:
        self._ws = await websockets.connect(self.url, max_size=None)
        self._reader = asyncio.create_task(self._read())
        status = await self.wait_for(lambda f: is_type(f, "status"))
        self.sid = status["data"]["sid"]
        for message in self.first:
            await self.send(message)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def send(self, message: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send(json.dumps(message))

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for raw in self._ws:
                self.frames.append(json.loads(raw) if isinstance(raw, str) else raw)
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self._changed.set()

    async def wait_for(self, predicate: Callable[[Frame], bool], start: int = 0) -> Any:
        """The first frame at index >= start that matches; waits for it."""

        async def scan() -> Any:
            index = start
            while True:
                while index < len(self.frames):
                    if predicate(self.frames[index]):
                        return self.frames[index]
                    index += 1
                if self._reader is not None and self._reader.done():
                    raise AssertionError(f"socket closed before the expected frame; got {self.types()}")
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(scan(), WAIT)

    async def wait_done(self, prompt_id: str, start: int = 0) -> None:
        """Until `executing {node: null}` of that prompt (the last message a prompt's client gets)."""
        done = {"node": None, "prompt_id": prompt_id}
        await self.wait_for(lambda f: is_type(f, "executing") and f["data"] == done, start)

    async def wait_status(self, remaining: int, start: int = 0) -> None:
        await self.wait_for(lambda f: is_type(f, "status") and queue_remaining(f) == remaining, start)

    @property
    def closed(self) -> bool:
        return self._reader is not None and self._reader.done()

    def types(self) -> list[str]:
        return [
            f"bin{int.from_bytes(f[:4], 'big')}" if isinstance(f, bytes) else f["type"] for f in self.frames
        ]


def is_type(frame: Frame, kind: str) -> bool:
    return isinstance(frame, dict) and frame.get("type") == kind


def queue_remaining(frame: dict[str, Any]) -> int:
    return frame["data"]["status"]["exec_info"]["queue_remaining"]


# --------------------------------------------------------------------------------------------------
# Canonical message sequences: what must match between a recording and a simulator run.
# --------------------------------------------------------------------------------------------------

TEMP_NAME = re.compile(r"ComfyUI_temp_[a-z]{5}_")


def _canon_output(output: Any) -> str:
    return TEMP_NAME.sub("ComfyUI_temp_?????_", json.dumps(output, sort_keys=True))


def _canon_binary(frame: Frame | dict[str, Any]) -> tuple[Any, ...]:
    if isinstance(frame, bytes):
        decoded = frames.decode_frame(frame)
        event = decoded.event_type
        if event == frames.TEXT:
            return ("bin", event, decoded.node_id, decoded.text)
        if event == frames.PREVIEW_IMAGE_WITH_METADATA:
            meta = dict(decoded.metadata or {})
            meta.pop("prompt_id", None)
            return ("bin", event, json.dumps(meta, sort_keys=True))
        return ("bin", event, decoded.image_format)
    if frame["event_type"] == frames.TEXT:
        return ("bin", frame["event_type"], frame["node_id"], frame["text"])
    if frame["event_type"] == frames.PREVIEW_IMAGE_WITH_METADATA:
        meta = dict(frame["metadata"])
        meta.pop("prompt_id", None)
        return ("bin", frame["event_type"], json.dumps(meta, sort_keys=True))
    return ("bin", frame["event_type"], frame["image_format"])


def canon(frame: Frame, cached: Iterable[str] = ()) -> tuple[Any, ...] | None:
    """A comparable token for one frame, or None when it concerns a node the recording had cached."""
    cached = set(cached)
    if isinstance(frame, bytes) or "event_type" in frame:
        return _canon_binary(frame)
    kind, data = frame["type"], frame["data"]
    if kind == "status":
        return (kind, queue_remaining(frame), "sid" in data)
    if kind == "feature_flags":
        return (kind, json.dumps(data, sort_keys=True))
    if kind in ("execution_start", "execution_success"):
        return (kind, sorted(data))
    if kind == "execution_cached":
        return (kind,)
    if kind == "progress_state":
        nodes = tuple(
            (
                n,
                e["state"],
                e["value"],
                e["max"],
                e["display_node_id"],
                e["real_node_id"],
                e["parent_node_id"],
            )
            for n, e in data["nodes"].items()
            if n not in cached
        )
        return (kind, nodes) if nodes else None
    if kind == "executing":
        if data["node"] in cached:
            return None
        return (kind, data["node"], sorted(data))
    if kind == "executed":
        return (kind, data["node"], data["display_node"], _canon_output(data["output"]))
    if kind == "progress":
        return (kind, data["node"], data["value"], data["max"])
    if kind == "execution_error":
        executed = [n for n in data["executed"] if n not in cached]
        return (kind, data["node_id"], data["node_type"], executed, data["exception_type"], sorted(data))
    if kind == "execution_interrupted":
        executed = sorted(n for n in data["executed"] if n not in cached)
        return (kind, data["node_id"], data["node_type"], executed, sorted(data))
    return (kind, json.dumps(data, sort_keys=True))


def canon_sequence(items: Iterable[Frame], cached: Iterable[str] = ()) -> list[tuple[Any, ...]]:
    tokens = (canon(item, cached) for item in items)
    return [t for t in tokens if t is not None]


def recorded(messages: Iterable[dict[str, Any]], client: str) -> list[Frame]:
    """One client's frames from a recording (`message` or described `binary`)."""
    return [m.get("message") or m["binary"] for m in messages if m["client"] == client]


def collapse_steps(tokens: list[tuple[Any, ...]], node: str) -> list[tuple[Any, ...]]:
    """Fold a node's run of (progress_state running k/n, progress k/n) pairs into one token: how many
    steps happen before an interrupt depends on timing, the shape does not."""
    out: list[tuple[Any, ...]] = []
    for token in tokens:
        stepping = (token[0] == "progress" and token[1] == node) or (
            token[0] == "progress_state"
            and any(e[0] == node and e[1] == "running" and e[2] != 0.0 for e in token[1])
        )
        if stepping:
            if not out or out[-1] != ("steps", node):
                out.append(("steps", node))
            continue
        out.append(token)
    return out


def cached_nodes(messages: Iterable[dict[str, Any]]) -> list[str]:
    for m in messages:
        message = m.get("message")
        if message and message["type"] == "execution_cached":
            return message["data"]["nodes"]
    return []


def replace_ids(value: Any, mapping: dict[str, str]) -> Any:
    text = json.dumps(value)
    for old, new in mapping.items():
        text = text.replace(old, new)
    return json.loads(text)


def drop_keys(value: Any, keys: set[str]) -> Any:
    """A copy without the given keys at any depth (timestamps, create_time...)."""
    if isinstance(value, dict):
        return {k: drop_keys(v, keys) for k, v in value.items() if k not in keys}
    if isinstance(value, list):
        return [drop_keys(v, keys) for v in value]
    return value


# --------------------------------------------------------------------------------------------------
# Driving a simulator
# --------------------------------------------------------------------------------------------------

FRONTEND_FLAGS = {
    "type": "feature_flags",
    "data": {
        "supports_preview_metadata": True,
        "supports_manager_v4_ui": True,
        "supports_progress_text_metadata": True,
    },
}
METADATA_FLAGS = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}


async def submit(client: httpx.AsyncClient, prompt: dict[str, Any], **fields: Any) -> str:
    response = await client.post("/api/prompt", json={"prompt": prompt, **fields})
    assert response.status_code == 200, response.text
    return response.json()["prompt_id"]


def client_for(server: SimulatorServer) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.url, timeout=30)


def sleep_prompt(seconds: float, prefix: str = "q") -> dict[str, Any]:
    return {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ProbeSleep", "inputs": {"image": ["1", 0], "seconds": seconds}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def png(width: int, height: int, color: tuple[int, ...], mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (width, height), color).save(buf, format="PNG")
    return buf.getvalue()


async def upload(client: httpx.AsyncClient, name: str, data: bytes, **fields: str) -> httpx.Response:
    return await client.post("/api/upload/image", files={"image": (name, data, "image/png")}, data=fields)
