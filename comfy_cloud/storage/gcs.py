"""Objects in a Google Cloud Storage bucket: `gs://<bucket>/<prefix>/sha256/ab/<hash>`.

* Uploads go from the spool file with a resumable upload in `upload_chunk_size` pieces (so memory holds
  one piece, not the file) and `if_generation_match=0`: two replicas storing the same bytes at once
  cannot overwrite each other, and a retried request that already succeeded answers 412, which is
  success here. The library's DEFAULT_RETRY policy retries transient failures.
* Downloads are ranged reads pinned to the object's generation, verified against the key's SHA-256.
* The client library blocks, so every call runs on a small thread pool owned by this storage (long
  transfers then cannot starve the event loop's default executor, which DNS lookups also use).

Emulator: the client library honours `STORAGE_EMULATOR_HOST` (e.g. `http://127.0.0.1:9023`) by itself,
with anonymous credentials. Anonymous credentials cannot sign, so `signed_url` returns None and the
gateway streams the object. If signing credentials are passed (`signing_credentials=`, as the tests do),
the URL is signed for the emulator's address, which serves it (it does not check signatures).

Signing in production: a service-account key (credentials that can sign) signs locally; credentials
without a key (Cloud Run, GKE, Compute Engine) sign through the IAM signBlob API, which needs the
service account to hold `roles/iam.serviceAccountTokenCreator` on itself. Other credentials (a user's
ADC login) cannot sign: None, and the gateway streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import google.auth.credentials
import google.auth.exceptions
import google.auth.transport.requests
import requests
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.cloud import storage as gcs
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse
from google.cloud.storage.retry import DEFAULT_RETRY

from comfy_cloud.storage.base import (
    DEFAULT_CHUNK_SIZE,
    Storage,
    StoredObject,
    check_content_type,
    check_expiry,
    content_disposition,
    validate_key,
)
from comfy_cloud.storage.errors import ObjectNotFound, StorageError

log = logging.getLogger(__name__)

T = TypeVar("T")

_MIB = 1 << 20
# Resumable upload pieces must be multiples of 256 KiB; 8 MiB is the size Google recommends as a floor.
DEFAULT_UPLOAD_CHUNK_SIZE = 8 * _MIB
DEFAULT_DOWNLOAD_RANGE_SIZE = 8 * _MIB
_FALLBACK_CONTENT_TYPE = "application/octet-stream"

# Failures worth retrying later; anything else (a TypeError, ...) is a bug and propagates as is.
_TRANSIENT: tuple[type[BaseException], ...] = (
    api_exceptions.GoogleAPIError,
    google.auth.exceptions.GoogleAuthError,
    requests.exceptions.RequestException,
    InvalidResponse,
    DataCorruption,
    OSError,
)


def _check_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    for part in prefix.split("/") if prefix else []:
        if part in {"", ".", ".."} or not all(c.isalnum() or c in "._-" for c in part):
            raise ValueError(f"invalid GCS prefix: {prefix!r}")
    return prefix


class GCSStorage(Storage):
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: gcs.Client | None = None,
        project: str | None = None,
        signing_credentials: google.auth.credentials.Credentials | None = None,
        upload_chunk_size: int = DEFAULT_UPLOAD_CHUNK_SIZE,
        download_range_size: int = DEFAULT_DOWNLOAD_RANGE_SIZE,
        spool_dir: Path | None = None,
        max_workers: int = 16,
        retry: Retry = DEFAULT_RETRY,
    ) -> None:
        if not bucket:
            raise ValueError("a GCS bucket name is required")
        if upload_chunk_size <= 0 or upload_chunk_size % (256 * 1024):
            raise ValueError("upload_chunk_size must be a positive multiple of 256 KiB")
        self.bucket_name = bucket
        self.prefix = _check_prefix(prefix)
        self.emulator_host = os.environ.get("STORAGE_EMULATOR_HOST") or None
        self._project = project
        self._client_obj = client
        self._client_lock = threading.Lock()
        self._signing_credentials = signing_credentials
        self._upload_chunk_size = upload_chunk_size
        self._download_range_size = download_range_size
        self._retry = retry
        self._told_unsigned = False
        self._spool_path = Path(spool_dir) if spool_dir else Path(tempfile.gettempdir())
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="gcs")

    def __repr__(self) -> str:
        return f"GCSStorage(gs://{self.bucket_name}/{self.prefix})"

    # -- plumbing ----------------------------------------------------------------------------------

    def _client(self) -> gcs.Client:
        # Created lazily, in a worker thread: finding default credentials may ask the metadata server.
        with self._client_lock:
            if self._client_obj is None:
                self._client_obj = gcs.Client(project=self._project)
            return self._client_obj

    def _blob(self, key: str, **kwargs: Any) -> gcs.Blob:
        validate_key(key)
        name = f"{self.prefix}/{key}" if self.prefix else key
        return self._client().bucket(self.bucket_name).blob(name, **kwargs)

    def _spool_dir(self) -> Path:
        return self._spool_path

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, partial(fn, *args))

    async def _call(self, what: str, fn: Callable[..., T], *args: object) -> T:
        try:
            return await self._run(fn, *args)
        except api_exceptions.NotFound as exc:
            raise ObjectNotFound(f"{what}: not found") from exc
        except _TRANSIENT as exc:
            raise StorageError(f"{what}: {exc}") from exc

    # -- operations --------------------------------------------------------------------------------

    async def _store(self, source: Path, obj: StoredObject, *, owned: bool) -> None:
        await self._call(f"upload {obj.key}", self._upload, source, obj)

    def _upload(self, source: Path, obj: StoredObject) -> None:
        blob = self._blob(obj.key, chunk_size=self._upload_chunk_size)
        # A 412 means it is already there: same key, same bytes.
        with contextlib.suppress(api_exceptions.PreconditionFailed):
            blob.upload_from_filename(
                str(source),
                content_type=obj.content_type,
                if_generation_match=0,
                retry=self._retry,
            )

    async def open_stream(self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> AsyncIterator[bytes]:
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        sha256 = validate_key(key)
        blob = await self._call(f"stat {key}", self._get_blob, key)
        if blob is None:
            raise ObjectNotFound(f"no object {key}")
        return self._read_ranges(blob, key, sha256, chunk_size)

    async def _read_ranges(
        self, blob: gcs.Blob, key: str, sha256: str, chunk_size: int
    ) -> AsyncIterator[bytes]:
        size = int(blob.size or 0)
        generation = blob.generation
        range_size = max(chunk_size, self._download_range_size)
        digest = hashlib.sha256()
        position = 0
        while position < size:
            end = min(position + range_size, size) - 1
            data = await self._call(
                f"download {key}", _download_range, blob, position, end, generation, digest, self._retry
            )
            if not data:
                raise StorageError(f"download {key}: no data at offset {position} of {size}")
            position += len(data)
            for offset in range(0, len(data), chunk_size):
                yield data[offset : offset + chunk_size]
        if digest.hexdigest() != sha256:
            raise StorageError(f"download {key}: content does not match its hash")

    def _get_blob(self, key: str) -> gcs.Blob | None:
        blob = self._blob(key)
        return blob.bucket.get_blob(blob.name, retry=self._retry)

    async def exists(self, key: str) -> bool:
        validate_key(key)
        return await self._call(f"exists {key}", lambda: self._blob(key).exists(retry=self._retry))

    async def stat(self, key: str) -> StoredObject | None:
        sha256 = validate_key(key)
        blob = await self._call(f"stat {key}", self._get_blob, key)
        if blob is None:
            return None
        return StoredObject(
            key=key,
            sha256=sha256,
            size=int(blob.size or 0),
            content_type=blob.content_type or _FALLBACK_CONTENT_TYPE,
        )

    async def delete(self, key: str) -> None:
        validate_key(key)
        with contextlib.suppress(ObjectNotFound):
            await self._call(f"delete {key}", lambda: self._blob(key).delete(retry=self._retry))

    async def signed_url(
        self,
        key: str,
        *,
        expires: timedelta,
        filename: str,
        content_type: str,
        disposition: str = "inline",
    ) -> str | None:
        validate_key(key)
        check_expiry(expires)
        check_content_type(content_type)
        header = content_disposition(disposition, filename)
        return await self._call(f"sign {key}", self._sign, key, expires, header, content_type)

    def _sign(self, key: str, expires: timedelta, disposition: str, content_type: str) -> str | None:
        client = self._client()
        credentials = self._signing_credentials or client._credentials
        extra: dict[str, Any] = {}
        if isinstance(credentials, google.auth.credentials.Signing):
            pass  # a private key (service account JSON, impersonation): signs locally
        elif isinstance(credentials, google.auth.credentials.AnonymousCredentials):
            return self._unsigned("anonymous credentials (the emulator's default)")
        elif getattr(credentials, "service_account_email", None):
            # Metadata-server credentials have no key: sign with IAM signBlob using their token.
            if not credentials.valid or credentials.service_account_email == "default":
                credentials.refresh(google.auth.transport.requests.Request())
            extra = {"service_account_email": credentials.service_account_email}
            extra["access_token"] = credentials.token
        else:
            return self._unsigned(f"{type(credentials).__name__} credentials cannot sign")
        return self._blob(key).generate_signed_url(
            version="v4",
            expiration=expires,
            method="GET",
            credentials=credentials,
            response_disposition=disposition,
            response_type=content_type,
            **extra,
        )

    def _unsigned(self, why: str) -> None:
        if not self._told_unsigned:
            self._told_unsigned = True
            log.info("%r: no signed URLs (%s); objects are streamed by the gateway", self, why)
        return None

    def close(self) -> None:
        """Release the worker threads (idle threads also end with the process)."""
        self._executor.shutdown(wait=False)


def _download_range(
    blob: gcs.Blob, start: int, end: int, generation: int | None, digest: Any, retry: Retry
) -> bytes:
    data = blob.download_as_bytes(
        start=start,
        end=end,
        raw_download=True,
        # Partial reads cannot be checked against the object's CRC; the whole stream is checked
        # against the key's SHA-256 instead.
        checksum=None,
        if_generation_match=generation,
        retry=retry,
    )
    digest.update(data)
    return data
