"""Object storage: `open_storage(url)` picks the backend from a URL.

* `file:///abs/path`      LocalStorage (objects as files under that directory)
* `gs://bucket[/prefix]`  GCSStorage (honours STORAGE_EMULATOR_HOST for the emulator)
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from comfy_cloud.storage.base import Storage, StoredObject, content_disposition, key_for, validate_key
from comfy_cloud.storage.errors import InvalidKey, ObjectNotFound, StorageError
from comfy_cloud.storage.local import LocalStorage

__all__ = [
    "InvalidKey",
    "LocalStorage",
    "ObjectNotFound",
    "Storage",
    "StorageError",
    "StoredObject",
    "content_disposition",
    "key_for",
    "open_storage",
    "validate_key",
]


def open_storage(url: str, *, small_writes_inline: bool = False) -> Storage:
    """`small_writes_inline`: see LocalStorage (other backends have no such choice)."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in {"", "localhost"} or parts.query or parts.fragment:
            raise ValueError(f"storage URL must look like file:///absolute/path: {url!r}")
        path = Path(unquote(parts.path))
        if not path.is_absolute() or not parts.path:
            raise ValueError(f"storage URL must name an absolute directory: {url!r}")
        return LocalStorage(path, small_writes_inline=small_writes_inline)
    if parts.scheme == "gs":
        if not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"storage URL must look like gs://bucket/prefix: {url!r}")
        # Imported here so that installs without the `gcp` extra can use local storage.
        from comfy_cloud.storage.gcs import GCSStorage

        return GCSStorage(parts.netloc, unquote(parts.path))
    raise ValueError(f"unsupported storage URL {url!r}: use file:///absolute/path or gs://bucket/prefix")
