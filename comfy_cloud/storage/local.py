"""Objects as files under one directory: `<root>/sha256/ab/<hash>`, with a `.meta.json` beside it.

Writes are atomic and durable: bytes go to a temporary file under `<root>/.tmp` (the same file system),
are fsynced, then renamed into place with os.replace, and the directory is fsynced. A reader sees the
whole object or none; a crash leaves at worst a stray temporary file, swept after a day.
Keys are validated against the content-addressed pattern before any path is built, so no key can name
a file outside the root.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import IO

from comfy_cloud.storage.base import (
    DEFAULT_CHUNK_SIZE,
    Storage,
    StoredObject,
    check_content_type,
    check_expiry,
    content_disposition,
    key_for,
    validate_key,
)
from comfy_cloud.storage.errors import ObjectNotFound, StorageError

log = logging.getLogger(__name__)

_FALLBACK_CONTENT_TYPE = "application/octet-stream"
# A spool file older than this belongs to a process that died mid-upload.
_STALE_SPOOL_SECONDS = 24 * 3600
# With small_writes_inline, objects up to this size are written on the caller's thread: hashing
# them takes well under the ~0.3 ms a worker-thread hop costs.
_INLINE_WRITE_LIMIT = 64 * 1024


class LocalStorage(Storage):
    _fsync_spool = True

    def __init__(self, root: Path | str, *, small_writes_inline: bool = False) -> None:
        """`small_writes_inline`: store small objects that arrived whole on the calling thread (see
        _put_small), for a process that stores one at a time and would rather not pay a thread hop."""
        self._small_writes_inline = small_writes_inline
        root = Path(root)
        if not root.is_absolute():
            raise ValueError(f"LocalStorage root must be an absolute path: {root}")
        self.root = root
        self._tmp = root / ".tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)
        _sweep_stale(self._tmp)

    def __repr__(self) -> str:
        return f"LocalStorage({str(self.root)!r})"

    def _spool_dir(self) -> Path:
        return self._tmp

    def _path(self, key: str) -> Path:
        validate_key(key)
        return self.root / key

    async def _put_small(self, data: bytes, content_type: str) -> StoredObject:
        # Bytes in hand (a job's output, an upload): the whole put in one worker-thread call, with
        # the same files, fsyncs and renames as a streamed put, so it is exactly as atomic and
        # durable. Measured per 150-byte object: ~0.25 ms of CPU against ~0.55 ms for the spool and
        # store steps in two calls with pathlib and mkstemp. (Inline on the event loop it would be
        # ~0.1 ms less, but the loop would then wait for the fsyncs: 0.3 ms here, more on slow disks.)
        # Under CPU contention the hop costs more (~0.3 ms against ~0.4 ms for the put itself): a
        # process that may wait for the fsyncs asks for small_writes_inline.
        try:
            if self._small_writes_inline and len(data) <= _INLINE_WRITE_LIMIT:
                return self._put_small_sync(data, content_type)
            return await self._run(self._put_small_sync, data, content_type)
        except OSError as exc:
            raise StorageError(f"cannot store an object under {self.root}: {exc}") from exc

    def _put_small_sync(self, data: bytes, content_type: str) -> StoredObject:
        sha256 = hashlib.sha256(data).hexdigest()
        key = key_for(sha256)
        final = self._path(key)
        existing = _stat(final, key)
        if existing is not None:
            return existing  # these bytes are stored already
        obj = StoredObject(key=key, sha256=sha256, size=len(data), content_type=content_type)
        spooled = self._write_temp(data, prefix="spool-")
        try:
            self._place(spooled, obj, final)
        except BaseException:
            os.unlink(spooled)
            raise
        return obj

    async def _store(self, source: Path, obj: StoredObject, *, owned: bool) -> None:
        try:
            await self._run(self._store_sync, source, obj, owned)
        except OSError as exc:
            raise StorageError(f"cannot write {obj.key}: {exc}") from exc

    def _store_sync(self, source: Path, obj: StoredObject, owned: bool) -> None:
        final = self._path(obj.key)
        if owned:
            self._place(str(source), obj, final)
            return
        copy = self._copy_verified(source, obj.sha256)
        try:
            self._place(str(copy), obj, final)
        except BaseException:
            copy.unlink(missing_ok=True)
            raise

    def _place(self, spooled: str, obj: StoredObject, final: Path) -> None:
        """Move a fsynced temporary file of the object's bytes into place, its metadata first (an
        object whose bytes are visible always has its content type), then make the names durable."""
        directory = str(final.parent)
        created = _make_dir(directory)
        meta = json.dumps({"content_type": obj.content_type}).encode()
        os.replace(self._write_temp(meta), f"{final}.meta.json")
        os.replace(spooled, final)
        _fsync_dir(directory)
        if created:
            _fsync_dir(os.path.dirname(directory))

    def _write_temp(self, data: bytes, prefix: str = "meta-") -> str:
        """A new fsynced file of `data` under .tmp, named by 96 random bits (opened O_EXCL)."""
        path = f"{self._tmp}/{prefix}{secrets.token_hex(12)}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)
        return path

    def _copy_verified(self, source: Path, sha256: str) -> Path:
        # put_file hashed the file before; hash the copy again so a file that changed in between
        # cannot end up under the wrong key.
        fd, name = tempfile.mkstemp(prefix="copy-", dir=self._tmp)
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                while chunk := src.read(DEFAULT_CHUNK_SIZE):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if digest.hexdigest() != sha256:
                raise StorageError(f"{source} changed while it was being stored")
        except BaseException:
            Path(name).unlink(missing_ok=True)
            raise
        return Path(name)

    async def open_stream(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        path = self._path(key)
        try:
            file = await self._run(path.open, "rb")
        except FileNotFoundError:
            raise ObjectNotFound(f"no object {key}") from None
        except OSError as exc:
            raise StorageError(f"cannot open {key}: {exc}") from exc
        return _read_chunks(file, chunk_size)

    async def exists(self, key: str) -> bool:
        return await self._run(self._path(key).is_file)

    async def stat(self, key: str) -> StoredObject | None:
        path = self._path(key)
        try:
            return await self._run(_stat, path, key)
        except OSError as exc:
            raise StorageError(f"cannot stat {key}: {exc}") from exc

    async def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            await self._run(_delete, path)
        except OSError as exc:
            raise StorageError(f"cannot delete {key}: {exc}") from exc

    async def signed_url(
        self,
        key: str,
        *,
        expires: timedelta,
        filename: str,
        content_type: str,
        disposition: str = "inline",
    ) -> str | None:
        # Files are served by the gateway (local_path + sendfile); there is nothing to sign.
        validate_key(key)
        check_expiry(expires)
        check_content_type(content_type)
        content_disposition(disposition, filename)
        return None

    def local_path(self, key: str) -> Path | None:
        return self._path(key)


async def _read_chunks(file: IO[bytes], chunk_size: int) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(file.read, chunk_size):
            yield chunk
    finally:
        await asyncio.shield(asyncio.to_thread(file.close))


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name + ".meta.json")


def _stat(path: Path, key: str) -> StoredObject | None:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    try:
        content_type = json.loads(_meta_path(path).read_bytes())["content_type"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        content_type = _FALLBACK_CONTENT_TYPE
    return StoredObject(key=key, sha256=validate_key(key), size=size, content_type=content_type)


def _delete(path: Path) -> None:
    path.unlink(missing_ok=True)
    _meta_path(path).unlink(missing_ok=True)


def _make_dir(path: str) -> bool:
    """Create the directory (and its parents) if missing; True when this call created it."""
    try:
        os.mkdir(path)
    except FileExistsError:
        return False
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)
    return True


def _fsync_dir(path: Path | str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sweep_stale(directory: Path) -> None:
    cutoff = time.time() - _STALE_SPOOL_SECONDS
    for entry in directory.iterdir():
        try:
            if entry.is_file() and entry.stat().st_mtime < cutoff:
                entry.unlink()
                log.info("removed a stale spool file %s", entry)
        except OSError:
            continue
