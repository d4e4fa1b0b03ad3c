"""The aiohttp plumbing shared by the service clients: a session opened on first use, whole answers.

aiohttp rather than httpx on these hot paths: a request costs ~215 us of CPU here against ~1,100 us.
A `ClientSession` must be created inside a running event loop, while the clients are often built
before one runs (settings, constructors), so `LazySession` opens it on the first request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiohttp

# Idle connections are dropped before uvicorn's 5 s keep-alive ends: reusing one the server is closing
# would fail a POST, which is never retried (NoAnswer).
KEEPALIVE_SECONDS = 4.0


def client_timeout(
    *, connect: float | None, read: float | None, pool: float | None = None
) -> aiohttp.ClientTimeout:
    """httpx-style limits as aiohttp's: `connect` bounds opening a connection, `read` each read of the
    answer, `pool` the wait for a free connection (aiohttp's `connect` covers that wait and the
    connecting together). No overall limit, so a long download is fine while bytes keep coming."""
    whole_connect = None if pool is None or connect is None else pool + connect
    return aiohttp.ClientTimeout(total=None, connect=whole_connect, sock_connect=connect, sock_read=read)


class LazySession:
    """One `aiohttp.ClientSession`, opened on first use. No cookies (no service sets any) and no
    headers beyond aiohttp's own few (`Host`, `Accept`, `Accept-Encoding`, `User-Agent`): never an
    `Origin`, which a loopback ComfyUI refuses when it does not match."""

    def __init__(
        self,
        *,
        timeout: aiohttp.ClientTimeout,
        limit: int = 100,
        limit_per_host: int = 0,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._timeout = timeout
        self._limits = {"limit": limit, "limit_per_host": limit_per_host}
        self._headers = headers
        self._session: aiohttp.ClientSession | None = None

    def get(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(**self._limits, keepalive_timeout=KEEPALIVE_SECONDS),
                timeout=self._timeout,
                headers=self._headers,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole answer, read to its end inside the transport-error mapping (a cut body is NoAnswer)."""

    method: str
    url: str
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


async def fetch(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> Answer:
    async with session.request(method, url, allow_redirects=False, **kwargs) as response:
        return Answer(method, url, response.status, await response.read())
