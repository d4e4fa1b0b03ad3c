"""Image arithmetic for the simulated nodes, on numpy arrays shaped like ComfyUI's tensors.

IMAGE = float32 [batch, height, width, channels] in 0..1; MASK = float32 [batch, height, width].
Float32 math everywhere, so values round the way ComfyUI's torch code does (e.g. SaveImage truncating
255 * (1 - 200/255) to 54, §3.5). Resampling uses Pillow's filters, close to but not bit-identical with
torch's `interpolate`.
"""

from __future__ import annotations

import io
import json
import mimetypes
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, ImageSequence
from PIL.PngImagePlugin import PngInfo

RESAMPLE = {
    "nearest-exact": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "area": Image.Resampling.BOX,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def to_uint8(image: np.ndarray) -> np.ndarray:
    """One [H, W, C] image to 8 bits by truncation, as SaveImage does."""
    return np.clip(np.float32(255.0) * image, 0, 255).astype(np.uint8)


def png_bytes(pixels: np.ndarray, text: Mapping[str, str] | None = None, compress_level: int = 4) -> bytes:
    info = None
    if text:
        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", pnginfo=info, compress_level=compress_level)
    return buf.getvalue()


def warm_up() -> None:
    """Load now what the first saved image and the first /view would load (Pillow's format plugins,
    the MIME table): ~20 ms of CPU otherwise charged to a fresh server's first prompt."""
    png_bytes(np.zeros((1, 1, 3), dtype=np.uint8), {"prompt": "{}"})
    mimetypes.init()


def save_png(path: Path, image: np.ndarray, text: Mapping[str, str] | None, compress_level: int) -> None:
    path.write_bytes(png_bytes(to_uint8(image), text, compress_level))


def png_text(prompt: Any, extra_pnginfo: Any) -> dict[str, str]:
    """SaveImage's metadata: a `prompt` chunk plus one chunk per extra_pnginfo key (e.g. `workflow`)."""
    text: dict[str, str] = {}
    if prompt is not None:
        text["prompt"] = json.dumps(prompt)
    if isinstance(extra_pnginfo, dict):
        for key, value in extra_pnginfo.items():
            text[key] = json.dumps(value)
    return text


def encode_preview(image: Image.Image, fmt: str, max_size: int | None) -> bytes:
    """A progress preview as ComfyUI encodes it: shrunk to max_size, quality 95 / compress level 1."""
    if max_size is not None:
        image = ImageOps.contain(image, (max_size, max_size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format=fmt, quality=95, compress_level=1)
    return buf.getvalue()


def empty_image(width: int, height: int, batch: int, color: int) -> np.ndarray:
    rgb = np.array([(color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF], dtype=np.float32) / 255.0
    return np.broadcast_to(rgb, (batch, height, width, 3)).copy()


def _frames(path: Path) -> list[Image.Image]:
    img = Image.open(path)
    frames: list[Image.Image] = []
    for frame in ImageSequence.Iterator(img):
        frames.append(ImageOps.exif_transpose(frame) or frame)
        if img.format == "MPO":  # ComfyUI reads only the first picture of an MPO file
            break
    return frames


def _alpha_mask(frame: Image.Image) -> np.ndarray:
    if "A" in frame.getbands():
        return 1.0 - np.asarray(frame.getchannel("A"), dtype=np.float32) / 255.0
    if frame.mode == "P" and "transparency" in frame.info:
        return 1.0 - np.asarray(frame.convert("RGBA").getchannel("A"), dtype=np.float32) / 255.0
    return np.zeros((64, 64), dtype=np.float32)  # ComfyUI's placeholder mask for opaque images


def load_image(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """LoadImage: every frame of the first frame's size, plus 1 - alpha as the mask."""
    images, masks, size = [], [], None
    for frame in _frames(path):
        if frame.mode == "I":
            frame = frame.point(lambda v: v * (1 / 255))
        rgb = frame.convert("RGB")
        size = size or rgb.size
        if rgb.size != size:
            continue
        images.append(np.asarray(rgb, dtype=np.float32) / 255.0)
        masks.append(_alpha_mask(frame))
    return np.stack(images), np.stack(masks)


def load_mask(path: Path, channel: str) -> np.ndarray:
    """LoadImageMask: one channel of the first frame (alpha inverted); 64x64 zeros if absent."""
    frame = _frames(path)[0]
    if frame.getbands() != ("R", "G", "B", "A"):
        if frame.mode == "I":
            frame = frame.point(lambda v: v * (1 / 255))
        frame = frame.convert("RGBA")
    band = channel[0].upper()
    if band not in frame.getbands():
        return np.zeros((1, 64, 64), dtype=np.float32)
    mask = np.asarray(frame.getchannel(band), dtype=np.float32) / 255.0
    return (1.0 - mask if band == "A" else mask)[None]


def _resize_plane(plane: np.ndarray, width: int, height: int, method: str) -> np.ndarray:
    resized = Image.fromarray(plane, mode="F").resize((width, height), RESAMPLE[method])
    return np.asarray(resized, dtype=np.float32)


def resize_planes(planes: np.ndarray, width: int, height: int, method: str) -> np.ndarray:
    """Resize [N, H, W] float planes."""
    return np.stack([_resize_plane(np.ascontiguousarray(p), width, height, method) for p in planes])


def resize_image(image: np.ndarray, width: int, height: int, method: str, crop: str) -> np.ndarray:
    """ComfyUI's common_upscale for IMAGE tensors (centre crop to the target aspect first)."""
    _, h, w, c = image.shape
    if crop == "center":
        old_aspect, new_aspect = w / h, width / height
        x = y = 0
        if old_aspect > new_aspect:
            x = round((w - w * (new_aspect / old_aspect)) / 2)
        elif old_aspect < new_aspect:
            y = round((h - h * (old_aspect / new_aspect)) / 2)
        image = image[:, y : h - y, x : w - x, :]
    planes = np.moveaxis(image, -1, 1).reshape(-1, image.shape[1], image.shape[2])
    out = resize_planes(planes, width, height, method).reshape(image.shape[0], c, height, width)
    return np.ascontiguousarray(np.moveaxis(out, 1, -1))


def scale_size(h: int, w: int, width: int, height: int) -> tuple[int, int]:
    """ImageScale's target size: a 0 side keeps the aspect ratio."""
    if width == 0:
        width = max(1, round(w * height / h))
    elif height == 0:
        height = max(1, round(h * width / w))
    return width, height


def gaussian_blur(image: np.ndarray, radius: int, sigma: float) -> np.ndarray:
    """ImageBlur: a (2r+1)² Gaussian over linspace(-1, 1) with reflect padding (separable form)."""
    if radius == 0:
        return image
    size = radius * 2 + 1
    t = np.linspace(-1, 1, size, dtype=np.float32)
    kernel = np.exp(-(t * t) / np.float32(2.0 * sigma * sigma)).astype(np.float32)
    kernel /= kernel.sum()
    padded = np.pad(image, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode="reflect")
    _, h, w, _ = image.shape
    rows = np.zeros((padded.shape[0], h, padded.shape[2], padded.shape[3]), dtype=np.float32)
    for j, weight in enumerate(kernel):
        rows += weight * padded[:, j : j + h]
    out = np.zeros_like(image)
    for j, weight in enumerate(kernel):
        out += weight * rows[:, :, j : j + w]
    return out


def repeat_to_batch(array: np.ndarray, batch: int) -> np.ndarray:
    if array.shape[0] > batch:
        return array[:batch]
    if array.shape[0] < batch:
        reps = -(-batch // array.shape[0])
        return np.concatenate([array] * reps)[:batch]
    return array


def composite(
    destination: np.ndarray,
    source: np.ndarray,
    x: int,
    y: int,
    resize_source: bool,
    mask: np.ndarray | None,
) -> np.ndarray:
    """ImageCompositeMasked (multiplier 1): paste `source` at (x, y), blended through `mask`."""
    dest = destination.copy()
    _, dh, dw, _ = dest.shape
    if resize_source:
        source = resize_image(source, dw, dh, "bilinear", "disabled")
    source = repeat_to_batch(source, dest.shape[0])
    _, sh, sw, _ = source.shape
    x = max(-sw, min(x, dw))
    y = max(-sh, min(y, dh))
    left, top = x, y
    if mask is None:
        weights = np.ones((source.shape[0], sh, sw), dtype=np.float32)
    else:
        planes = mask.reshape(-1, mask.shape[-2], mask.shape[-1]).astype(np.float32)
        weights = repeat_to_batch(resize_planes(planes, sw, sh, "bilinear"), source.shape[0])
    vis_w, vis_h = dw - left + min(0, x), dh - top + min(0, y)
    weights = weights[:, :vis_h, :vis_w, None]
    region = dest[:, top : top + sh, left : left + sw, :]
    blended = weights * source[:, :vis_h, :vis_w, :] + (1.0 - weights) * region
    dest[:, top : top + sh, left : left + sw, :] = blended
    return dest


def tensor_repr(value: Any) -> str:
    """str() of an input as ComfyUI reports it in execution_error (torch-style for arrays)."""
    if isinstance(value, np.ndarray):
        # torch prints integral floats as "1." and others with 4 fixed decimals ("0.7490").
        integral = value.dtype.kind != "f" or bool(np.all(np.mod(value, 1) == 0))
        style: dict[str, Any] = {} if integral else {"precision": 4, "floatmode": "fixed"}
        body = np.array2string(value, separator=", ", prefix="tensor(", threshold=1000, edgeitems=3, **style)
        return f"tensor({body})"
    return str(value)
