"""The node classes the simulator executes, written against a small context instead of ComfyUI's globals.

Each node is an async function `(ctx, inputs) -> NodeResult`; `inputs` holds the linked and widget values
plus the hidden ones (`prompt`, `extra_pnginfo`, `unique_id`). `NodeResult.outputs` may be longer than
the class's declared outputs (SaveImage returns its images); the executor keeps only the declared ones, so
each version's catalogue decides what is linkable. Nodes with a `ui` produce `executed`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from PIL import Image

from comfy_cloud.simulator import images
from comfy_cloud.simulator.files import COUNTERS, Dirs, input_file_path, save_image_path

# ("JPEG" | "PNG", image, max edge or None), as a ComfyUI ProgressBar preview.
Preview = tuple[str, Image.Image, int | None]
# ComfyUI's PreviewImage alphabet (sic: no "w", two "p").
TEMP_ALPHABET = "abcdefghijklmnopqrstupvxyz"


@dataclass
class NodeResult:
    outputs: tuple[Any, ...] = ()
    ui: dict[str, Any] | None = None


class NodeContext(Protocol):
    """What a running node may do; implemented by the executor."""

    node_id: str
    dirs: Dirs
    preview_size: int

    async def progress(self, value: int, total: int, preview: Preview | None = None) -> None: ...
    def check_interrupt(self) -> None: ...
    def progress_text(self, text: str) -> None: ...
    async def compute(self, pixels: int, fn: Callable[..., Any], *args: Any) -> Any: ...
    async def sleep(self, seconds: float) -> None: ...


NodeFunc = Callable[[NodeContext, dict[str, Any]], Awaitable[NodeResult]]
NODES: dict[str, NodeFunc] = {}


def node(name: str) -> Callable[[NodeFunc], NodeFunc]:
    def register(fn: NodeFunc) -> NodeFunc:
        NODES[name] = fn
        return fn

    return register


def _pixels(array: np.ndarray) -> int:
    return int(np.prod(array.shape[:3]))


@node("EmptyImage")
async def empty_image(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    w, h, b = int(i["width"]), int(i["height"]), int(i["batch_size"])
    out = await ctx.compute(w * h * b, images.empty_image, w, h, b, int(i["color"]))
    return NodeResult((out,))


@node("ImageInvert")
async def image_invert(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    image = i["image"]
    return NodeResult((await ctx.compute(_pixels(image), np.subtract, np.float32(1.0), image),))


@node("ImageScale")
async def image_scale(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    image = i["image"]
    width, height = int(i["width"]), int(i["height"])
    if width == 0 and height == 0:
        return NodeResult((image,))
    width, height = images.scale_size(image.shape[1], image.shape[2], width, height)
    work = max(_pixels(image), width * height * image.shape[0])
    out = await ctx.compute(work, images.resize_image, image, width, height, i["upscale_method"], i["crop"])
    return NodeResult((out,))


@node("ImageScaleBy")
async def image_scale_by(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    image = i["image"]
    scale = float(i["scale_by"])
    width, height = round(image.shape[2] * scale), round(image.shape[1] * scale)
    work = max(_pixels(image), width * height * image.shape[0])
    out = await ctx.compute(work, images.resize_image, image, width, height, i["upscale_method"], "disabled")
    return NodeResult((out,))


@node("ImageBlur")
async def image_blur(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    image, radius = i["image"], int(i["blur_radius"])
    # The cost grows with the kernel: weigh it so big blurs leave the event loop.
    out = await ctx.compute(
        _pixels(image) * (radius + 1), images.gaussian_blur, image, radius, float(i["sigma"])
    )
    return NodeResult((out,))


@node("ImageCompositeMasked")
async def image_composite_masked(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    dest = i["destination"]
    out = await ctx.compute(
        _pixels(dest),
        images.composite,
        dest,
        i["source"],
        int(i["x"]),
        int(i["y"]),
        bool(i["resize_source"]),
        i.get("mask"),
    )
    return NodeResult((out,))


@node("SolidMask")
async def solid_mask(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    w, h = int(i["width"]), int(i["height"])
    return NodeResult((np.full((1, h, w), float(i["value"]), dtype=np.float32),))


def _input_path(ctx: NodeContext, name: str) -> Any:
    path = input_file_path(ctx.dirs, name)
    if path is None or not path.is_file():
        raise FileNotFoundError(f"[Errno 2] No such file or directory: '{name}'")
    return path


@node("LoadImage")
async def load_image(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    path = _input_path(ctx, str(i["image"]))
    image, mask = await ctx.compute(path.stat().st_size, images.load_image, path)
    return NodeResult((image, mask))


@node("LoadImageMask")
async def load_image_mask(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    path = _input_path(ctx, str(i["image"]))
    return NodeResult((await ctx.compute(path.stat().st_size, images.load_mask, path, str(i["channel"])),))


def _save_batch(
    batch: np.ndarray, prefix: str, folder_root: Any, kind: str, text: dict[str, str], level: int
) -> list[dict[str, str]]:
    folder, stem, counter, subfolder = save_image_path(prefix, folder_root, batch.shape[2], batch.shape[1])
    results = []
    for number, image in enumerate(batch):
        name = f"{stem.replace('%batch_num%', str(number))}_{counter:05}_.png"
        images.save_png(folder / name, image, text, level)
        results.append({"filename": name, "subfolder": subfolder, "type": kind})
        counter += 1
    COUNTERS.saved(folder, stem, counter)
    return results


@node("SaveImage")
async def save_image(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    batch = i["images"]
    text = images.png_text(i.get("prompt"), i.get("extra_pnginfo"))
    prefix = str(i["filename_prefix"])
    results = await ctx.compute(
        _pixels(batch), _save_batch, batch, prefix, ctx.dirs.output, "output", text, 4
    )
    return NodeResult((batch,), {"images": results})


@node("PreviewImage")
async def preview_image(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    batch = i["images"]
    text = images.png_text(i.get("prompt"), i.get("extra_pnginfo"))
    prefix = "ComfyUI_temp_" + "".join(random.choice(TEMP_ALPHABET) for _ in range(5))
    results = await ctx.compute(_pixels(batch), _save_batch, batch, prefix, ctx.dirs.temp, "temp", text, 1)
    return NodeResult((batch,), {"images": results})


@node("GetImageSize")
async def get_image_size(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    batch, height, width = i["image"].shape[:3]
    ctx.progress_text(f"width: {width}, height: {height}\n batch size: {batch}")
    return NodeResult((width, height, batch))


def preview_text(source: Any) -> str:
    """PreviewAny's rendering: strings as is, scalars with str(), the rest as JSON or str()."""
    if source is None:
        return "None"
    if isinstance(source, str):
        return source
    if isinstance(source, int | float | bool):
        return str(source)
    try:
        return json.dumps(source)
    except (TypeError, ValueError):
        return images.tensor_repr(source)


@node("PreviewAny")
async def preview_any(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    text = preview_text(i.get("source"))
    return NodeResult((text,), {"text": [text]})


@node("SaveImageWebsocket")
async def save_image_websocket(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    batch = i["images"]
    total = batch.shape[0]
    for step, image in enumerate(batch):
        pil = Image.fromarray(images.to_uint8(image))
        await ctx.progress(step, total, ("PNG", pil, None))
    return NodeResult()


@node("ProbePreview")
async def probe_preview(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    steps = int(i["steps"])
    size = ctx.preview_size
    for step in range(1, steps + 1):
        red = Image.new("RGB", (size, size), (255, 0, 0))
        await ctx.progress(step, steps, ("JPEG", red, max(64, size)))
    return NodeResult((i["image"],))


@node("ProbeSleep")
async def probe_sleep(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    steps = max(1, int(float(i["seconds"]) * 10))
    for step in range(1, steps + 1):
        ctx.check_interrupt()
        await ctx.sleep(0.1)
        await ctx.progress(step, steps)
    return NodeResult((i["image"],))


@node("ProbeFail")
async def probe_fail(ctx: NodeContext, i: dict[str, Any]) -> NodeResult:
    raise RuntimeError(str(i["message"]))
