"""One behaviour suite for every storage backend (LocalStorage, GCSStorage on the GCS emulator)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import resource
import time
import tracemalloc
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from comfy_cloud.storage import (
    InvalidKey,
    LocalStorage,
    ObjectNotFound,
    Storage,
    StorageError,
    StoredObject,
    content_disposition,
    key_for,
    open_storage,
)
from integration.support.gcs_emulator import GCSEmulator

MIB = 1 << 20


async def read_all(storage: Storage, key: str, chunk_size: int = 64 * 1024) -> bytes:
    stream = await storage.open_stream(key, chunk_size=chunk_size)
    return b"".join([chunk async for chunk in stream])


async def chunks_of(data: bytes, size: int) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]
        yield b""  # empty chunks are legal and change nothing


def count_stores(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every real upload, to observe deduplication: the backend's `_store`, or for
    LocalStorage `_place` (the step that writes an object, whether bytes arrived whole or streamed)."""
    calls: list[str] = []
    name = "_place" if isinstance(storage, LocalStorage) else "_store"
    original = getattr(storage, name)

    def counting(source: Any, obj: StoredObject, *args: Any, **kwargs: Any) -> Any:
        calls.append(obj.key)
        return original(source, obj, *args, **kwargs)

    monkeypatch.setattr(storage, name, counting)
    return calls


async def test_round_trip_is_byte_identical(storage: Storage) -> None:
    data = os.urandom(3 * MIB + 12345)
    obj = await storage.put_stream(chunks_of(data, 100_000), content_type="image/png")

    digest = hashlib.sha256(data).hexdigest()
    assert obj == StoredObject(key=key_for(digest), sha256=digest, size=len(data), content_type="image/png")
    assert obj.key == f"sha256/{digest[:2]}/{digest}"
    assert await storage.exists(obj.key)
    assert await storage.stat(obj.key) == obj
    assert await read_all(storage, obj.key) == data
    # A chunk size larger than the object, and one that does not divide it.
    assert await read_all(storage, obj.key, chunk_size=8 * MIB) == data
    stream = await storage.open_stream(obj.key, chunk_size=1_000_000)
    sizes = [len(chunk) async for chunk in stream]
    assert all(size <= 1_000_000 for size in sizes) and sum(sizes) == len(data)


async def test_empty_object(storage: Storage) -> None:
    obj = await storage.put_bytes(b"", content_type="text/plain")
    assert obj.size == 0
    assert obj.sha256 == hashlib.sha256(b"").hexdigest()
    assert await read_all(storage, obj.key) == b""


async def test_put_file_leaves_the_file_in_place(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "upload.bin"
    data = os.urandom(MIB + 7)
    source.write_bytes(data)
    obj = await storage.put_file(source, content_type="application/octet-stream")
    assert obj.size == len(data)
    assert source.read_bytes() == data
    assert await read_all(storage, obj.key) == data


async def test_same_content_is_uploaded_once(
    storage: Storage, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stores = count_stores(storage, monkeypatch)
    data = os.urandom(256 * 1024)
    first = await storage.put_bytes(data, content_type="image/png")
    again = await storage.put_stream(chunks_of(data, 1000), content_type="image/png")
    path = tmp_path / "same.png"
    path.write_bytes(data)
    from_file = await storage.put_file(path, content_type="image/webp")

    assert stores == [first.key]
    assert again == first
    # The stored object is returned as it is stored (the first content type wins).
    assert from_file == first
    other = await storage.put_bytes(data + b"!", content_type="image/png")
    assert other.key != first.key
    assert stores == [first.key, other.key]


async def test_concurrent_puts_of_the_same_bytes(storage: Storage) -> None:
    data = os.urandom(2 * MIB)
    results = await asyncio.gather(
        *(storage.put_stream(chunks_of(data, 65536), content_type="image/png") for _ in range(5))
    )
    assert len({r.key for r in results}) == 1
    assert await read_all(storage, results[0].key) == data


async def test_missing_object(storage: Storage) -> None:
    key = key_for(hashlib.sha256(b"never stored").hexdigest())
    with pytest.raises(ObjectNotFound):
        await storage.open_stream(key)
    assert await storage.stat(key) is None
    assert not await storage.exists(key)
    await storage.delete(key)  # deleting a missing object is not an error


async def test_delete(storage: Storage) -> None:
    obj = await storage.put_bytes(b"to be deleted", content_type="text/plain")
    await storage.delete(obj.key)
    assert not await storage.exists(obj.key)
    with pytest.raises(ObjectNotFound):
        await storage.open_stream(obj.key)
    # Stored again after a delete: uploaded again.
    assert (await storage.put_bytes(b"to be deleted", content_type="text/plain")) == obj
    assert await read_all(storage, obj.key) == b"to be deleted"


BAD_KEYS = [
    "../../etc/passwd",
    "/etc/passwd",
    "sha256/../../../etc/passwd",
    "sha256/ab/../../../../etc/passwd",
    "sha256/ab/ab" + "0" * 62 + "/../x",
    "sha256/ab/ab" + "0" * 62 + "/",
    "sha256/ab/ab" + "0" * 61 + ".",
    "sha256/AB/AB" + "0" * 62,  # upper case: a second spelling of a key
    "sha256/cd/ab" + "0" * 62,  # directory disagrees with the hash
    "sha256/ab/ab" + "0" * 62 + "\x00",
    "sha256%2f..%2f..%2fetc",
    "ab" + "0" * 62,
    "",
]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_keys_that_are_not_content_addresses_are_refused(storage: Storage, key: str) -> None:
    with pytest.raises(InvalidKey):
        await storage.open_stream(key)
    with pytest.raises(InvalidKey):
        await storage.stat(key)
    with pytest.raises(InvalidKey):
        await storage.exists(key)
    with pytest.raises(InvalidKey):
        await storage.delete(key)
    with pytest.raises(InvalidKey):
        storage.local_path(key)
    with pytest.raises(InvalidKey):
        await storage.signed_url(
            key, expires=timedelta(minutes=5), filename="a.png", content_type="image/png"
        )


async def test_a_failing_upload_leaves_nothing_behind(storage: Storage, tmp_path: Path) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * MIB
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await storage.put_stream(broken(), content_type="image/png")
    spool = storage._spool_dir()
    assert [p.name for p in spool.iterdir() if p.name.startswith("spool-")] == []


async def test_content_type_is_checked(storage: Storage) -> None:
    with pytest.raises(ValueError):
        await storage.put_bytes(b"x", content_type="text/html\r\nSet-Cookie: a=b")


async def test_a_200_mb_upload_keeps_memory_flat(storage: Storage) -> None:
    """The spool holds the bytes, not memory: peak RSS and Python allocations stay far below the
    file size. Chunks are produced on the fly, so only the storage's own buffers count."""
    total_chunks = 200
    expected = hashlib.sha256()

    async def produce() -> AsyncIterator[bytes]:
        for _ in range(total_chunks):
            chunk = os.urandom(MIB)
            expected.update(chunk)
            yield chunk

    reset = _reset_peak_rss()
    rss_before = _peak_rss_bytes()
    tracemalloc.start()
    started = time.monotonic()
    try:
        obj = await storage.put_stream(produce(), content_type="application/octet-stream")
        _, traced_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - started
    rss_delta = _peak_rss_bytes() - rss_before

    size = total_chunks * MIB
    print(
        f"\n{type(storage).__name__}: 200 MiB put_stream in {elapsed:.1f} s, "
        f"peak RSS delta {rss_delta / MIB:.1f} MiB ({'VmHWM reset' if reset else 'ru_maxrss'}), "
        f"peak traced Python memory {traced_peak / MIB:.1f} MiB"
    )
    assert obj.size == size
    assert obj.sha256 == expected.hexdigest()
    assert traced_peak < 48 * MIB
    assert rss_delta < 64 * MIB

    # Read back through the stream and check every byte, also with flat memory.
    reset = _reset_peak_rss()
    rss_before = _peak_rss_bytes()
    digest = hashlib.sha256()
    read = 0
    started = time.monotonic()
    async for chunk in await storage.open_stream(obj.key):
        digest.update(chunk)
        read += len(chunk)
    elapsed = time.monotonic() - started
    rss_delta = _peak_rss_bytes() - rss_before
    name = type(storage).__name__
    print(f"{name}: 200 MiB open_stream in {elapsed:.1f} s, peak RSS delta {rss_delta / MIB:.1f} MiB")
    assert read == size
    assert digest.hexdigest() == obj.sha256
    assert rss_delta < 64 * MIB


def _reset_peak_rss() -> bool:
    # Linux: writing 5 to clear_refs resets VmHWM, so the peak measured is this test's own.
    try:
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")
    except OSError:
        return False
    return True


def _peak_rss_bytes() -> int:
    try:
        with open("/proc/self/status") as file:
            for line in file:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- backend specifics ------------------------------------------------------------------------------


async def test_local_storage_layout_and_local_path(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "objects")
    obj = await storage.put_bytes(b"hello", content_type="text/plain")
    path = storage.local_path(obj.key)
    assert path == tmp_path / "objects" / obj.key
    assert path is not None and path.read_bytes() == b"hello"
    assert (
        await storage.signed_url(
            obj.key, expires=timedelta(minutes=1), filename="a", content_type="text/plain"
        )
        is None
    )
    # Nothing but the object, its metadata and the (empty) spool directory.
    files = sorted(
        str(p.relative_to(tmp_path / "objects")) for p in (tmp_path / "objects").rglob("*") if p.is_file()
    )
    assert files == [obj.key, obj.key + ".meta.json"]


async def test_local_storage_replaces_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = LocalStorage(tmp_path / "objects")
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy(src: str | Path, dst: str | Path) -> None:
        renames.append((str(src), str(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    obj = await storage.put_bytes(b"atomic", content_type="text/plain")
    final = str(tmp_path / "objects" / obj.key)
    assert renames[-1][1] == final
    # The temporary file is on the same file system (under the root), so the rename is atomic.
    assert renames[-1][0].startswith(str(tmp_path / "objects" / ".tmp"))


async def test_local_storage_small_writes_inline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Small objects are written on the caller's thread (same files, fsyncs and renames); larger ones
    # still go to a worker thread.
    storage = LocalStorage(tmp_path / "objects", small_writes_inline=True)
    hops: list[Any] = []
    real_run = storage._run

    async def counting_run(function: Any, *args: Any) -> Any:
        hops.append(function)
        return await real_run(function, *args)

    monkeypatch.setattr(storage, "_run", counting_run)
    small = await storage.put_bytes(b"small output", content_type="image/png")
    assert hops == []
    assert await read_all(storage, small.key) == b"small output"
    assert (await storage.stat(small.key)) == small
    large = await storage.put_bytes(b"x" * (256 * 1024), content_type="image/png")
    assert any(getattr(hop, "__name__", "") == "_put_small_sync" for hop in hops)
    assert (await storage.stat(large.key)) == large


async def test_local_storage_refuses_relative_root() -> None:
    with pytest.raises(ValueError):
        LocalStorage(Path("relative/dir"))


async def test_gcs_unsigned_on_the_emulator(gcs_storage: Storage) -> None:
    obj = await gcs_storage.put_bytes(b"x", content_type="text/plain")
    # Anonymous emulator credentials cannot sign: the caller streams.
    assert (
        await gcs_storage.signed_url(
            obj.key, expires=timedelta(minutes=5), filename="x.txt", content_type="text/plain"
        )
        is None
    )
    assert gcs_storage.local_path(obj.key) is None


async def test_gcs_signed_url(
    gcs_emulator: GCSEmulator, gcs_bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from comfy_cloud.storage.gcs import GCSStorage

    BUCKET = gcs_bucket
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.host)
    storage = GCSStorage(BUCKET, "signed", signing_credentials=_service_account(), spool_dir=tmp_path)
    data = b"\x89PNG signed"
    obj = await storage.put_bytes(data, content_type="image/png")
    url = await storage.signed_url(
        obj.key,
        expires=timedelta(minutes=10),
        filename="Bild 1 ö.png",
        content_type="image/png",
        disposition="attachment",
    )
    assert url is not None
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}" == gcs_emulator.host
    assert parts.path == f"/{BUCKET}/signed/{obj.key}"
    assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert query["X-Goog-Credential"].startswith("signer@comfy-cloud-test.iam.gserviceaccount.com/")
    assert query["X-Goog-Expires"] == "600"
    assert query["X-Goog-SignedHeaders"] == "host"
    assert len(query["X-Goog-Signature"]) == 512 and int(query["X-Goog-Signature"], 16) >= 0
    assert query["response-content-type"] == "image/png"
    assert query["response-content-disposition"] == content_disposition("attachment", "Bild 1 ö.png")
    # The emulator serves signed URLs (without checking the signature): the whole path works.
    async with httpx.AsyncClient() as http:
        response = await http.get(url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-disposition"].startswith('attachment; filename="Bild 1 _.png"')
    storage.close()


async def test_gcs_unreachable_is_a_storage_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from google.api_core.retry import Retry

    from comfy_cloud.storage.gcs import GCSStorage

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:9")  # discard port: nothing listens
    storage = GCSStorage("b", retry=Retry(initial=0.01, maximum=0.02, timeout=0.3), spool_dir=tmp_path)
    with pytest.raises(StorageError):
        await storage.put_bytes(b"x", content_type="text/plain")
    with pytest.raises(StorageError):
        await storage.stat(key_for(hashlib.sha256(b"x").hexdigest()))
    storage.close()


def _service_account():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.oauth2 import service_account

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return service_account.Credentials.from_service_account_info(
        {
            "type": "service_account",
            "project_id": "comfy-cloud-test",
            "private_key_id": "test",
            "private_key": pem,
            "client_email": "signer@comfy-cloud-test.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": "https://oauth2.googleapis.com/token",
        }
    )


# -- configuration ----------------------------------------------------------------------------------


def test_open_storage(tmp_path: Path) -> None:
    local = open_storage(f"file://{tmp_path}/objects")
    assert isinstance(local, LocalStorage) and local.root == tmp_path / "objects"

    from comfy_cloud.storage.gcs import GCSStorage

    gcs = open_storage("gs://my-bucket/some/prefix/")
    assert isinstance(gcs, GCSStorage)
    assert (gcs.bucket_name, gcs.prefix) == ("my-bucket", "some/prefix")
    assert open_storage("gs://my-bucket").prefix == ""  # type: ignore[attr-defined]

    for bad in [
        "s3://bucket/x",
        "file:relative/dir",
        "file://host/dir",
        "/abs/path",
        "gs:///x",
        "gs://b/../x",
        "",
    ]:
        with pytest.raises(ValueError):
            open_storage(bad)


def test_content_disposition() -> None:
    assert content_disposition("inline", "a.png") == 'inline; filename="a.png"'
    assert content_disposition("attachment", 'x"\r\n.png') == (
        "attachment; filename=\"x___.png\"; filename*=UTF-8''x%22%0D%0A.png"
    )
    assert content_disposition("inline", "ö.png").endswith("filename*=UTF-8''%C3%B6.png")
    with pytest.raises(ValueError):
        content_disposition("evil", "a.png")
