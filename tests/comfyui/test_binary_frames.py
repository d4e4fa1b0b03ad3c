"""Binary WebSocket frames, checked against every frame described in tests/fixtures/comfyui/ws/."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import pytest

from comfy_cloud.comfyui.frames import (
    PREVIEW_IMAGE,
    PREVIEW_IMAGE_WITH_METADATA,
    TEXT,
    Frame,
    decode_frame,
    encode_preview,
    encode_preview_with_metadata,
    encode_progress_text,
)

from .fixture_data import FIXTURES


def _recorded_frames() -> list[tuple[str, dict[str, Any]]]:
    found = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("binary"), dict):
                found.append((f"{where}@{node.get('t_ms')}", node["binary"]))
            for value in node.values():
                walk(value, where)
        elif isinstance(node, list):
            for value in node:
                walk(value, where)

    for file in sorted((FIXTURES / "ws").glob("*.json")):
        walk(json.loads(file.read_text()), file.name)
    return found


RECORDED = _recorded_frames()
TEXT_FRAMES = [(w, f) for w, f in RECORDED if f["event_type"] == TEXT]
IMAGE_FRAMES = [(w, f) for w, f in RECORDED if f["event_type"] != TEXT]


def test_fixtures_hold_frames_of_every_type() -> None:
    assert {f["event_type"] for _, f in RECORDED} == {PREVIEW_IMAGE, TEXT, PREVIEW_IMAGE_WITH_METADATA}
    assert len(RECORDED) == 14


@pytest.mark.parametrize(("where", "recorded"), TEXT_FRAMES, ids=[w for w, _ in TEXT_FRAMES])
def test_recorded_progress_text_frames_decode_and_encode_byte_for_byte(where: str, recorded: dict) -> None:
    raw = base64.b64decode(recorded["frame_base64"])
    assert len(raw) == recorded["length"]
    frame = decode_frame(raw)
    assert (frame.event_type, frame.node_id, frame.text, frame.prompt_id) == (
        TEXT,
        recorded["node_id"],
        recorded["text"],
        None,
    )
    assert frame.payload == recorded["text"].encode()
    assert encode_progress_text(recorded["node_id"], recorded["text"]) == raw


def _rebuild(recorded: dict[str, Any]) -> bytes:
    """The recorded frame, with a stand-in image of the recorded length (image payloads were not stored)."""
    start = bytes.fromhex(recorded["image_first_bytes_hex"])
    if recorded["event_type"] == PREVIEW_IMAGE:
        header = 8
        mime = {1: "image/jpeg", 2: "image/png"}[recorded["image_format"]]
        image = start + b"\0" * (recorded["length"] - header - len(start))
        return encode_preview(image, mime)
    header = 8 + len(json.dumps(recorded["metadata"]))
    image = start + b"\0" * (recorded["length"] - header - len(start))
    return encode_preview_with_metadata(image, recorded["metadata"])


@pytest.mark.parametrize(("where", "recorded"), IMAGE_FRAMES, ids=[w for w, _ in IMAGE_FRAMES])
def test_recorded_preview_frames_have_the_recorded_layout(where: str, recorded: dict) -> None:
    raw = _rebuild(recorded)
    assert len(raw) == recorded["length"]
    if "first16_hex" in recorded:
        assert raw[:16].hex() == recorded["first16_hex"]
    if "metadata_length" in recorded:
        assert struct.unpack(">I", raw[4:8])[0] == recorded["metadata_length"]
    frame = decode_frame(raw)
    assert frame.event_type == recorded["event_type"]
    assert frame.payload.startswith(bytes.fromhex(recorded["image_first_bytes_hex"]))
    if recorded["event_type"] == PREVIEW_IMAGE:
        assert frame.image_format == recorded["image_format"]
        assert frame.mime == {1: "image/jpeg", 2: "image/png"}[recorded["image_format"]]
    else:
        assert frame.metadata == recorded["metadata"]
        assert frame.image_type == recorded["metadata"]["image_type"]
        assert (frame.node_id, frame.prompt_id) == (
            recorded["metadata"]["node_id"],
            recorded["metadata"]["prompt_id"],
        )


def test_metadata_json_uses_pythons_default_separators() -> None:
    raw = encode_preview_with_metadata(b"img", {"node_id": "3", "parent_node_id": None})
    assert raw[8:-3] == b'{"node_id": "3", "parent_node_id": null}'


@pytest.mark.parametrize(
    ("image_type", "number"), [("image/jpeg", 1), ("image/png", 2), ("PNG", 2), ("JPEG", 1)]
)
def test_preview_format_number_comes_from_the_image_type(image_type: str, number: int) -> None:
    assert encode_preview(b"x", image_type) == struct.pack(">II", 1, number) + b"x"


def test_preview_of_another_format_is_refused() -> None:
    with pytest.raises(ValueError):
        encode_preview(b"x", "image/webp")


def test_progress_text_with_prompt_id_round_trips() -> None:
    raw = encode_progress_text("12:5", "step 3/10 ✓", prompt_id="82b2f8e9-7cf5-4491-991c-007ab1869e8c")
    assert raw[:8] == struct.pack(">II", TEXT, 36)
    frame = decode_frame(raw, text_with_prompt_id=True)
    assert frame == Frame(
        TEXT,
        "step 3/10 ✓".encode(),
        node_id="12:5",
        text="step 3/10 ✓",
        prompt_id="82b2f8e9-7cf5-4491-991c-007ab1869e8c",
    )


def test_empty_progress_text_is_valid() -> None:
    assert decode_frame(encode_progress_text("6", "")).text == ""


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x00\x01",
        struct.pack(">I", 2) + b"raw",  # unencoded previews never leave ComfyUI
        struct.pack(">I", 9),
        struct.pack(">I", 1) + b"\x00\x00",  # no image format
        struct.pack(">II", 1, 3) + b"img",  # unknown image format
        struct.pack(">II", 3, 10) + b"6",  # node id runs past the end
        struct.pack(">II", 3, 1) + b"6" + b"\xff\xfe",  # text is not UTF-8
        struct.pack(">I", 3) + b"\x00",  # truncated node id length
        struct.pack(">II", 4, 100) + b"{}",  # metadata runs past the end
        struct.pack(">II", 4, 5) + b"{nope" + b"img",  # metadata is not JSON
        struct.pack(">II", 4, 2) + b"[]" + b"img",  # metadata is not an object
    ],
)
def test_garbage_frames_are_refused(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_frame(data)
