"""Pixel work of the file routes, as ComfyUI's server does it (all blocking: run in a thread).

- `composite_mask`: `/upload/mask` puts the alpha channel of the uploaded mask onto the original image
  and saves a PNG that keeps the original's text chunks (the workflow metadata).
- `preview` and `channel`: `/view?preview=webp;90` re-encodes to WebP or JPEG, `/view?channel=rgb|a`
  returns a PNG without alpha or of the alpha alone.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, PngImagePlugin

from services.ingest.errors import ComfyError
from services.ingest.files.limits import check_dimensions

_PNG = "image/png"


class NotAnImage(ComfyError):
    """The file cannot be decoded as an image (ComfyUI fails with a 500 here; we answer 400)."""

    status_code = 400


@dataclass(frozen=True, slots=True)
class Encoded:
    data: bytes
    content_type: str


def _open(data: bytes) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            check_dimensions(*image.size)  # outputs never passed the upload limits
            image.load()
    except ComfyError:
        raise
    except Exception as exc:  # Pillow raises many types for corrupt or unknown data
        raise NotAnImage(f"not a decodable image: {exc}") from None
    return image


def composite_mask(original: bytes, mask: bytes) -> bytes:
    """The original as RGBA with the mask's alpha, as a PNG (compress level 4, text chunks kept)."""
    source = _open(original)
    metadata = PngImagePlugin.PngInfo()
    for key, value in getattr(source, "text", {}).items():
        metadata.add_text(key, value)
    mask_image = _open(mask)
    if mask_image.size != source.size:
        raise NotAnImage(f"mask is {mask_image.size}, the original image is {source.size}")
    result = source.convert("RGBA")
    result.putalpha(mask_image.convert("RGBA").getchannel("A"))
    out = io.BytesIO()
    result.save(out, format="PNG", compress_level=4, pnginfo=metadata)
    return out.getvalue()


def preview(data: bytes, spec: str, channel: str) -> Encoded:
    """`preview=<fmt>[;Q]`: WebP unless fmt is jpeg; any channel containing `a` forces WebP."""
    parts = spec.split(";")
    image_format = parts[0]
    if image_format not in ("webp", "jpeg") or "a" in channel:
        image_format = "webp"
    quality = int(parts[-1]) if parts[-1].isdigit() else 90
    image = _open(data)
    if image_format == "jpeg" or channel == "rgb":
        image = image.convert("RGB")
    elif image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGBA")  # e.g. 16-bit or palette images, which WebP cannot take
    out = io.BytesIO()
    image.save(out, format=image_format, quality=min(quality, 100))
    return Encoded(out.getvalue(), f"image/{image_format}")


def rgb(data: bytes) -> Encoded:
    image = _open(data)
    if image.mode == "RGBA":
        r, g, b, _ = image.split()
        image = Image.merge("RGB", (r, g, b))
    else:
        image = image.convert("RGB")
    return Encoded(_png(image), _PNG)


def alpha(data: bytes) -> Encoded:
    """A PNG whose alpha is the source's (opaque when it has none; only RGBA counts, as in ComfyUI)."""
    image = _open(data)
    channel = image.split()[3] if image.mode == "RGBA" else Image.new("L", image.size, 255)
    result = Image.new("RGBA", channel.size)
    result.putalpha(channel)
    return Encoded(_png(result), _PNG)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
