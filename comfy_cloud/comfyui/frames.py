"""ComfyUI's binary WebSocket frames (protocol reference §4.4).

Every frame starts with a big-endian uint32 event type:
- 1 PREVIEW_IMAGE: uint32 image format (1 JPEG, 2 PNG), then the image;
- 3 TEXT (progress text): uint32 len + node id, then UTF-8 text; clients that negotiated
  `supports_progress_text_metadata` expect uint32 len + prompt id before the node id;
- 4 PREVIEW_IMAGE_WITH_METADATA: uint32 len + metadata JSON (json.dumps with default separators,
  e.g. {"node_id", "prompt_id", "display_node_id", "parent_node_id", "real_node_id", "image_type"}),
  then the image.
Type 2 (unencoded preview) exists only inside ComfyUI and is never sent.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

PREVIEW_IMAGE = 1
TEXT = 3
PREVIEW_IMAGE_WITH_METADATA = 4

JPEG = 1
PNG = 2
_FORMAT_BY_MIME = {"image/jpeg": JPEG, "image/png": PNG, "jpeg": JPEG, "jpg": JPEG, "png": PNG}
_MIME_BY_FORMAT = {JPEG: "image/jpeg", PNG: "image/png"}

_UINT32 = struct.Struct(">I")
_HEADER = struct.Struct(">II")


@dataclass(frozen=True, slots=True)
class Frame:
    event_type: int
    payload: bytes  # the image (types 1 and 4) or the UTF-8 text (type 3)
    image_format: int | None = None  # type 1: 1 JPEG, 2 PNG
    image_type: str | None = None  # MIME type of the image (types 1 and 4)
    metadata: dict[str, Any] | None = None  # type 4
    node_id: str | None = None  # type 3 (and metadata["node_id"] for type 4)
    text: str | None = None  # type 3
    prompt_id: str | None = None  # type 3 with prompt id, or metadata["prompt_id"] for type 4

    @property
    def mime(self) -> str | None:
        return self.image_type


def image_format(image_type: str) -> int:
    """ComfyUI's image format number for a MIME type ("image/jpeg") or PIL format name ("PNG")."""
    try:
        return _FORMAT_BY_MIME[image_type.lower()]
    except KeyError:
        raise ValueError(f"previews are JPEG or PNG, not {image_type!r}") from None


def encode_preview(image: bytes, image_type: str) -> bytes:
    """Type 1: the legacy preview for clients without `supports_preview_metadata`."""
    return _HEADER.pack(PREVIEW_IMAGE, image_format(image_type)) + image


def encode_preview_with_metadata(image: bytes, metadata: dict[str, Any]) -> bytes:
    """Type 4; `metadata` is sent as given (ComfyUI's keys end with "image_type")."""
    encoded = json.dumps(metadata).encode("utf-8")  # default separators, exactly as ComfyUI
    return _HEADER.pack(PREVIEW_IMAGE_WITH_METADATA, len(encoded)) + encoded + image


def encode_progress_text(node_id: str, text: str, prompt_id: str | None = None) -> bytes:
    """Type 3; the prompt id prefix is only for clients that negotiated progress-text metadata."""
    node = str(node_id).encode("utf-8")
    prefix = b""
    if prompt_id is not None:
        prompt = prompt_id.encode("utf-8")
        prefix = _UINT32.pack(len(prompt)) + prompt
    return _UINT32.pack(TEXT) + prefix + _UINT32.pack(len(node)) + node + text.encode("utf-8")


def decode_frame(data: bytes, *, text_with_prompt_id: bool = False) -> Frame:
    """Decode a binary frame; raise ValueError when it is not a well-formed type 1, 3 or 4 frame.

    A type-3 frame does not say whether it carries a prompt id: pass `text_with_prompt_id` when the sender
    advertised `supports_progress_text_metadata` (ComfyUI 0.33 does not).
    """
    data = bytes(data)
    event_type = _read_uint32(data, 0, "event type")
    if event_type == PREVIEW_IMAGE:
        return _decode_preview(data)
    if event_type == TEXT:
        return _decode_text(data, text_with_prompt_id)
    if event_type == PREVIEW_IMAGE_WITH_METADATA:
        return _decode_preview_with_metadata(data)
    raise ValueError(f"unknown binary event type {event_type}")


def _read_uint32(data: bytes, offset: int, what: str) -> int:
    if len(data) < offset + 4:
        raise ValueError(f"frame too short for its {what} ({len(data)} bytes)")
    return _UINT32.unpack_from(data, offset)[0]


def _read_chunk(data: bytes, offset: int, what: str) -> tuple[bytes, int]:
    # A uint32 length followed by that many bytes; returns the bytes and the offset after them.
    length = _read_uint32(data, offset, f"{what} length")
    end = offset + 4 + length
    if end > len(data):
        raise ValueError(f"{what} length {length} runs past the end of the frame")
    return data[offset + 4 : end], end


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} is not UTF-8") from exc


def _decode_preview(data: bytes) -> Frame:
    fmt = _read_uint32(data, 4, "image format")
    mime = _MIME_BY_FORMAT.get(fmt)
    if mime is None:
        raise ValueError(f"unknown preview image format {fmt}")
    return Frame(PREVIEW_IMAGE, data[8:], image_format=fmt, image_type=mime)


def _decode_text(data: bytes, with_prompt_id: bool) -> Frame:
    offset = 4
    prompt_id = None
    if with_prompt_id:
        raw_prompt, offset = _read_chunk(data, offset, "prompt id")
        prompt_id = _utf8(raw_prompt, "prompt id")
    raw_node, offset = _read_chunk(data, offset, "node id")
    payload = data[offset:]
    return Frame(
        TEXT,
        payload,
        node_id=_utf8(raw_node, "node id"),
        text=_utf8(payload, "progress text"),
        prompt_id=prompt_id,
    )


def _decode_preview_with_metadata(data: bytes) -> Frame:
    raw, offset = _read_chunk(data, 4, "metadata")
    try:
        metadata = json.loads(raw)
    except ValueError as exc:  # includes UnicodeDecodeError
        raise ValueError("preview metadata is not JSON") from exc
    if not isinstance(metadata, dict):
        raise ValueError("preview metadata is not a JSON object")
    image_type = metadata.get("image_type")
    node_id = metadata.get("node_id")
    prompt_id = metadata.get("prompt_id")
    return Frame(
        PREVIEW_IMAGE_WITH_METADATA,
        data[offset:],
        image_type=image_type if isinstance(image_type, str) else None,
        metadata=metadata,
        node_id=node_id if isinstance(node_id, str) else None,
        prompt_id=prompt_id if isinstance(prompt_id, str) else None,
    )
