"""Upload limits (Comfy Cloud's: 50 MB, 16384 px per edge, 64 MP; over any of them a 400) and the
image inspection that enforces them.

Only the header is read to learn an image's size, so a decompression bomb is refused before any pixel
is decoded. Files Pillow does not recognise (audio, video, 3D models, ...) are accepted as they are:
ComfyUI's `/upload/image` takes any file, and the frontend uploads all of those through it.
"""

from __future__ import annotations

import warnings
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

from services.ingest.errors import Body, ComfyError

MAX_UPLOAD_BYTES = 50 * 1024 * 1024
MAX_EDGE = 16384
MAX_PIXELS = 64 * 1024 * 1024  # 67,108,864
# A multipart body carries a little more than the file (boundaries, headers, the other fields).
FORM_OVERHEAD = 64 * 1024


class UploadRejected(ComfyError):
    """The upload breaks a limit; the message says which (text/plain, so a client can show it)."""

    status_code = 400
    body = Body.TEXT


def too_large_message(limit: int = MAX_UPLOAD_BYTES) -> str:
    return f"File too large: uploads are limited to {limit // (1024 * 1024)} MB"


def check_dimensions(width: int, height: int) -> None:
    if width > MAX_EDGE or height > MAX_EDGE:
        raise UploadRejected(
            f"Image too large: {width}x{height} pixels; each edge must be at most {MAX_EDGE} pixels"
        )
    if width * height > MAX_PIXELS:
        raise UploadRejected(
            f"Image too large: {width}x{height} is {width * height} pixels; "
            f"at most {MAX_PIXELS} pixels (64 MP) are accepted"
        )


def image_size(file: BinaryIO) -> tuple[int, int] | None:
    """(width, height) from the image header, or None when the file is not an image Pillow knows.
    Blocking: run it in a thread. Leaves the file positioned at its start."""
    file.seek(0)
    try:
        with warnings.catch_warnings():
            # Our own limits apply; Pillow's bomb warning would only add noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                return image.size
    except Image.DecompressionBombError:
        raise UploadRejected(f"Image too large: more than {MAX_PIXELS} pixels (64 MP)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    finally:
        file.seek(0)


def check_image_file(file: BinaryIO) -> None:
    size = image_size(file)
    if size is not None:
        check_dimensions(*size)
