"""The object storage interface: content-addressed, streamed, the same for every backend.

Objects are immutable and named by the SHA-256 of their bytes (`sha256/ab/abcdef...`), so storing the
same bytes twice stores them once, and a key can never be overwritten with other bytes. Names as users
see them live in the database (`files`), never in storage.

Uploads are spooled: the bytes are hashed while they are written to a temporary file (the key is only
known at the end), then the backend moves or uploads that file. Memory stays flat whatever the size.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import IO, TypeVar
from urllib.parse import quote

from comfy_cloud.storage.errors import InvalidKey, StorageError

T = TypeVar("T")

DEFAULT_CHUNK_SIZE = 1 << 20
# Small chunks (an HTTP body arrives in ~64 KiB pieces) are gathered up to this size before they go
# to a worker thread, so a 1 GB upload costs ~1,000 thread hops rather than ~16,000.
_SPOOL_BUFFER = 1 << 20

# The only keys there are. The backreference makes the directory part agree with the hash, so a
# valid key has exactly one spelling; anything else (`..`, `/`, `%2e`, NUL) cannot match.
_KEY = re.compile(r"sha256/([0-9a-f]{2})/(\1[0-9a-f]{62})")
_HEX = re.compile(r"[0-9a-f]{64}")
_CONTENT_TYPE = re.compile(r"[\x21-\x7e]+/[\x21-\x7e]+(?:;[\x20-\x7e]*)?")
_DISPOSITIONS = frozenset({"inline", "attachment"})


@dataclass(frozen=True, slots=True)
class StoredObject:
    key: str
    sha256: str
    size: int
    content_type: str


def key_for(sha256: str) -> str:
    if not _HEX.fullmatch(sha256):
        raise InvalidKey(f"not a lowercase hex SHA-256: {sha256!r}")
    return f"sha256/{sha256[:2]}/{sha256}"


def validate_key(key: str) -> str:
    """Return the SHA-256 that `key` names; raise InvalidKey for anything that is not a storage key."""
    match = _KEY.fullmatch(key) if isinstance(key, str) else None
    if match is None:
        raise InvalidKey(f"invalid storage key: {key!r}")
    return match.group(2)


def check_content_type(content_type: str) -> None:
    # It ends up in response headers and object metadata: refuse CR/LF and other control characters.
    if not isinstance(content_type, str) or not _CONTENT_TYPE.fullmatch(content_type):
        raise ValueError(f"invalid content type: {content_type!r}")


def content_disposition(disposition: str, filename: str) -> str:
    """A Content-Disposition header value (RFC 6266): an ASCII fallback plus the UTF-8 name."""
    if disposition not in _DISPOSITIONS:
        raise ValueError(f"disposition must be one of {sorted(_DISPOSITIONS)}: {disposition!r}")
    fallback = "".join(c if 0x20 <= ord(c) < 0x7F and c not in '"\\' else "_" for c in filename)
    value = f'{disposition}; filename="{fallback}"'
    if fallback != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value


def check_expiry(expires: timedelta) -> None:
    # V4 signatures are valid for at most 7 days; the same bound keeps every backend alike.
    if not timedelta(seconds=1) <= expires <= timedelta(days=7):
        raise ValueError(f"signed URL expiry must be between 1 s and 7 days: {expires}")


@dataclass(slots=True)
class Spooled:
    path: Path
    sha256: str
    size: int


class Storage(ABC):
    """Content-addressed object storage. Every method is safe to call concurrently."""

    # LocalStorage renames the spool file into place, so it must be on disk before the rename.
    _fsync_spool = False

    # -- uploads (shared: spool, hash, deduplicate, then the backend's `_store`) -------------------

    async def put_stream(self, chunks: AsyncIterable[bytes], *, content_type: str) -> StoredObject:
        """Store the streamed bytes. Returns the stored object; if an object with the same bytes
        already exists nothing is uploaded and that object is returned (with its content type)."""
        check_content_type(content_type)
        head, rest = await _read_head(chunks, _SPOOL_BUFFER)
        if rest is None:
            # It all arrived (typical of outputs and uploads): the backend may store it in one go.
            return await self._put_small(head, content_type)
        spooled = await self._spool(_chain(head, rest))
        try:
            return await self._put_spooled(spooled, content_type, owned=True)
        finally:
            await self._run(partial(spooled.path.unlink, missing_ok=True))

    async def _put_small(self, data: bytes, content_type: str) -> StoredObject:
        """Store bytes that arrived whole (at most _SPOOL_BUFFER of them). By default like any stream;
        LocalStorage does it all in one worker-thread call instead of six."""
        spooled = await self._spool(_chain(data, None))
        try:
            return await self._put_spooled(spooled, content_type, owned=True)
        finally:
            await self._run(partial(spooled.path.unlink, missing_ok=True))

    async def put_bytes(self, data: bytes, *, content_type: str) -> StoredObject:
        async def single() -> AsyncIterator[bytes]:
            yield bytes(data)

        return await self.put_stream(single(), content_type=content_type)

    async def put_file(self, path: Path | str, *, content_type: str) -> StoredObject:
        """Store a local file. It is read (to hash it) before it is stored: it must not change
        during the call. The file itself is left in place."""
        check_content_type(content_type)
        path = Path(path)
        try:
            sha256, size = await self._run(_hash_file, path)
        except FileNotFoundError:
            raise  # the caller named a file that is not there: not a storage failure
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc}") from exc
        return await self._put_spooled(Spooled(path, sha256, size), content_type, owned=False)

    async def _put_spooled(self, spooled: Spooled, content_type: str, *, owned: bool) -> StoredObject:
        key = key_for(spooled.sha256)
        existing = await self.stat(key)
        if existing is not None:
            return existing
        obj = StoredObject(key=key, sha256=spooled.sha256, size=spooled.size, content_type=content_type)
        await self._store(spooled.path, obj, owned=owned)
        return obj

    async def _spool(self, chunks: AsyncIterable[bytes]) -> Spooled:
        directory = self._spool_dir()
        try:
            fd, name = await self._run(partial(tempfile.mkstemp, prefix="spool-", dir=directory))
        except OSError as exc:
            raise StorageError(f"cannot create a temporary file in {directory}: {exc}") from exc
        path = Path(name)
        digest = hashlib.sha256()
        size = 0
        buffer = bytearray()
        file = os.fdopen(fd, "wb")

        async def write(fn: Callable[..., None], *args: object) -> None:
            # Only the file's own errors are storage errors; the producer's (a client that went
            # away) propagate unchanged.
            try:
                await self._run(fn, *args)
            except OSError as exc:
                raise StorageError(f"cannot write a temporary file in {directory}: {exc}") from exc

        try:
            async for chunk in chunks:
                size += len(chunk)
                if not buffer and len(chunk) >= _SPOOL_BUFFER:
                    await write(_absorb, file, digest, chunk)  # big enough: no copy
                    continue
                buffer += chunk
                if len(buffer) >= _SPOOL_BUFFER:
                    await write(_absorb, file, digest, bytes(buffer))
                    buffer.clear()
            if buffer:
                await write(_absorb, file, digest, bytes(buffer))
            await write(_finish, file, self._fsync_spool)
        except BaseException:
            # Also on cancellation: no leftovers.
            await asyncio.shield(self._run(_discard, file, path))
            raise
        return Spooled(path=path, sha256=digest.hexdigest(), size=size)

    # -- the backend -------------------------------------------------------------------------------

    @abstractmethod
    def _spool_dir(self) -> Path:
        """Where upload spool files go (for LocalStorage: the same file system as the objects)."""

    @abstractmethod
    async def _store(self, source: Path, obj: StoredObject, *, owned: bool) -> None:
        """Make `obj` exist with the bytes of `source`. `owned`: source is a spool file this
        storage created, and may be moved. Called only when the object did not exist."""

    @abstractmethod
    async def open_stream(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        """Open the object for reading; raises ObjectNotFound *now*, before any byte is sent, so an
        HTTP handler can still answer 404. Iterate the result to the end or `aclose()` it."""

    @abstractmethod
    async def exists(self, key: str) -> bool: ...

    @abstractmethod
    async def stat(self, key: str) -> StoredObject | None: ...

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Delete the object; deleting a missing object is not an error."""

    @abstractmethod
    async def signed_url(
        self,
        key: str,
        *,
        expires: timedelta,
        filename: str,
        content_type: str,
        disposition: str = "inline",
    ) -> str | None:
        """A URL the browser can GET directly, answering with `content_type` and a Content-Disposition
        for `filename`; None when this backend cannot sign (the caller then streams the object)."""

    def local_path(self, key: str) -> Path | None:
        """The file holding the object when the backend keeps objects as local files (to serve it
        with sendfile), else None. Existence is not checked: use stat() or handle a missing file."""
        validate_key(key)
        return None

    def close(self) -> None:  # noqa: B027 - optional hook; most backends hold nothing
        """Release what the backend holds (GCS: its worker threads). Safe to call twice."""

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        """Run blocking IO off the event loop."""
        return await asyncio.to_thread(fn, *args)


async def _read_head(chunks: AsyncIterable[bytes], limit: int) -> tuple[bytes, AsyncIterator[bytes] | None]:
    """The first chunks, up to at least `limit` bytes, and the rest of the stream (None: that was all)."""
    iterator = aiter(chunks)
    head = bytearray()
    while len(head) < limit:
        try:
            head += await anext(iterator)
        except StopAsyncIteration:
            return bytes(head), None
    return bytes(head), iterator


async def _chain(head: bytes, rest: AsyncIterator[bytes] | None) -> AsyncIterator[bytes]:
    if head:
        yield head
    if rest is not None:
        async for chunk in rest:
            yield chunk


def _absorb(file: IO[bytes], digest: hashlib._Hash, data: bytes) -> None:
    digest.update(data)
    file.write(data)


def _finish(file: IO[bytes], fsync: bool) -> None:
    if fsync:
        os.fsync(file.fileno())
    file.close()


def _discard(file: IO[bytes], path: Path) -> None:
    file.close()
    path.unlink(missing_ok=True)


def _hash_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while chunk := file.read(DEFAULT_CHUNK_SIZE):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size
