"""Job events over PostgreSQL LISTEN/NOTIFY, channel `comfy_cloud_events`.

Publishing: one transaction per `publish()`, one NOTIFY per event; PostgreSQL delivers a transaction's
notifications on commit, in order, to every listening session. When every payload fits inline that
transaction is a single statement (one round trip). A NOTIFY payload must stay under
8000 bytes, so an event whose JSON exceeds `max_inline_bytes` (7,900) travels by reference: its JSON
goes into `broadcast_payloads` in the same transaction and the notification is `{"ref":<id>}`.
Rows older than `payload_ttl` (10 minutes) are deleted periodically; a listener that falls further
behind than that loses those events (logged).

Receiving: a dedicated asyncpg connection (not from any pool) LISTENs. A keepalive query every
`keepalive_interval` notices a connection that died silently; on any failure it reconnects with
capped exponential backoff. Notifications sent while it is disconnected are lost (PostgreSQL keeps
none for absent listeners): `ready` is false meanwhile, and consumers re-read state from the
database. An inline notification is decoded and delivered as it arrives; a by-reference one, and
every notification behind it until it is resolved, goes through a single task that fetches payloads
in arrival order, so a large event never overtakes the small ones behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Callable, Sequence
from datetime import timedelta
from functools import partial

import asyncpg

from comfy_cloud.broadcast.base import Broadcaster, Listener
from comfy_cloud.broadcast.events import JobEvent
from comfy_cloud.broadcast.subscription import DEFAULT_MAX_QUEUED, BroadcastError, Subscription
from database.engine import sync_url
from database.repositories import broadcast as repo

log = logging.getLogger(__name__)

CHANNEL = "comfy_cloud_events"
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; keep a margin.
MAX_INLINE_BYTES = 7900
LISTENER_APPLICATION_NAME = "comfy_cloud_broadcast_listener"
PUBLISHER_APPLICATION_NAME = "comfy_cloud_broadcast"
_REF_PREFIX = '{"ref":'
# Connection failures that a reconnect or a retry can cure.
_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


class PostgresBroadcaster(Broadcaster):
    def __init__(
        self,
        database_url: str,
        *,
        channel: str = CHANNEL,
        max_inline_bytes: int = MAX_INLINE_BYTES,
        pool_size: int = 4,
        keepalive_interval: float = 10.0,
        keepalive_timeout: float = 5.0,
        connect_timeout: float = 10.0,
        start_timeout: float = 30.0,
        reconnect_max_delay: float = 5.0,
        cleanup_interval: float = 60.0,
        payload_ttl: timedelta = timedelta(minutes=10),
        max_queued: int = DEFAULT_MAX_QUEUED,
        hard_limit: int | None = None,
        listen: bool = True,
    ) -> None:
        super().__init__(max_queued=max_queued, hard_limit=hard_limit)
        # listen=False: publish only (services that never subscribe). Every LISTEN connection makes
        # PostgreSQL wake its backend and the process for every notification, so a fleet of workers
        # that each listened would multiply the cost of every event by the fleet's size.
        self._listen = listen
        if not 0 < max_inline_bytes < 8000:
            raise ValueError("max_inline_bytes must be below PostgreSQL's 8000-byte NOTIFY limit")
        self._dsn = sync_url(database_url)
        self._channel = channel
        self._max_inline = max_inline_bytes
        self._pool_size = pool_size
        self._keepalive_interval = keepalive_interval
        self._keepalive_timeout = keepalive_timeout
        self._connect_timeout = connect_timeout
        self._start_timeout = start_timeout
        self._reconnect_max_delay = reconnect_max_delay
        self._cleanup_interval = cleanup_interval
        self._payload_ttl = payload_ttl
        self._pool: asyncpg.Pool | None = None
        self._listener: asyncpg.Connection | None = None
        self._inbox: asyncio.Queue[str] = asyncio.Queue()
        self._unresolved = 0  # notifications put in the inbox and not yet delivered
        self._tasks: list[asyncio.Task[None]] = []
        # Postgres drops a NOTIFY identical to one already queued in the same transaction: a
        # counter makes every payload distinct (JobEvent.from_json ignores the extra field).
        self._nonce = itertools.count()
        self._closing = False

    @property
    def listener_pid(self) -> int | None:
        """The server process of the LISTEN connection (diagnostics, tests)."""
        conn = self._listener
        return conn.get_server_pid() if conn is not None and not conn.is_closed() else None

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._tasks:
            return
        self._closing = False
        try:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._pool_size,
                timeout=self._connect_timeout,
                server_settings={"application_name": PUBLISHER_APPLICATION_NAME},
                # Publishing leaves no session state behind (no LISTEN, settings, locks or cursors),
                # so skip asyncpg's reset query: a round trip on every release. An open transaction
                # is still rolled back by the pool.
                reset=_no_reset,
            )
        except _CONNECTION_ERRORS as exc:
            raise BroadcastError(f"cannot connect to PostgreSQL: {exc}") from exc
        self._tasks = [asyncio.create_task(self._cleanup_forever(), name="broadcast-cleanup")]
        if not self._listen:
            self._set_ready(True)  # publishing needs only the pool
            return
        self._tasks += [
            asyncio.create_task(self._listen_forever(), name="broadcast-listen"),
            asyncio.create_task(self._resolve_forever(), name="broadcast-resolve"),
        ]
        try:
            async with asyncio.timeout(self._start_timeout):
                await self.wait_ready()
        except TimeoutError:
            await self.close()
            raise BroadcastError(
                f"could not LISTEN on {self._channel} within {self._start_timeout} s"
            ) from None

    async def close(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._set_ready(False)
        if self._listener is not None:
            await _close_quietly(self._listener)
            self._listener = None
        if self._pool is not None:
            try:
                await asyncio.wait_for(self._pool.close(), timeout=5)
            except (TimeoutError, *_CONNECTION_ERRORS):
                self._pool.terminate()
            self._pool = None
        self._end_subscriptions()

    def subscribe(self, *, max_queued: int | None = None, hard_limit: int | None = None) -> Subscription:
        self._check_listening()
        return super().subscribe(max_queued=max_queued, hard_limit=hard_limit)

    def listen(self, callback: Listener) -> Callable[[], None]:
        self._check_listening()
        return super().listen(callback)

    def _check_listening(self) -> None:
        if not self._listen:
            raise BroadcastError("this broadcaster only publishes (listen=False)")

    # -- publishing --------------------------------------------------------------------------------

    async def publish(self, events: Sequence[JobEvent]) -> None:
        if not events:
            return
        if self._pool is None or self._closing:
            raise BroadcastError("the broadcaster is not started")
        payloads = [self._encode(event) for event in events]
        try:
            async with self._pool.acquire() as conn:
                if all(len(payload.encode()) <= self._max_inline for payload in payloads):
                    # The usual case: one statement, one round trip (no BEGIN/COMMIT of its own).
                    await repo.notify_now(conn, self._channel, payloads)
                    return
                async with conn.transaction():
                    notes: list[str] = []
                    for payload in payloads:
                        data = payload.encode()
                        if len(data) > self._max_inline:
                            ref = await repo.insert_payload(conn, data)
                            payload = f"{_REF_PREFIX}{ref}}}"
                        notes.append(payload)
                    await repo.notify(conn, self._channel, notes)
        except _CONNECTION_ERRORS as exc:
            raise BroadcastError(f"cannot publish {len(events)} event(s): {exc}") from exc

    def inline_notification(self, database_url: str, events: Sequence[JobEvent]) -> repo.Notification | None:
        """`events` as NOTIFYs for a caller that sends them on `channel` itself, with pg_notify() in a
        statement of its own on `database_url` (saving the round trip of a publish; delivered on its
        commit, like a publish). None when that is not this broadcaster's database or an event is too
        large to go inline: publish() them then."""
        if self._closing or sync_url(database_url) != self._dsn:
            return None
        payloads = [self._encode(event) for event in events]
        if any(len(payload.encode()) > self._max_inline for payload in payloads):
            return None
        return repo.Notification(self._channel, payloads)

    @property
    def channel(self) -> str:
        return self._channel

    def _encode(self, event: JobEvent) -> str:
        body = event.to_json()
        return f'{{"n":{next(self._nonce)},{body[1:]}'

    # -- receiving ---------------------------------------------------------------------------------

    def _on_notification(self, conn: asyncpg.Connection, pid: int, channel: str, payload: str) -> None:
        if self._unresolved or payload.startswith(_REF_PREFIX):
            # Behind (or itself) a payload to fetch: the resolving task keeps the order.
            self._unresolved += 1
            self._inbox.put_nowait(payload)
        else:
            self._decode_and_deliver(payload)

    def _decode_and_deliver(self, payload: str) -> None:
        try:
            event = JobEvent.from_json(payload)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed notification on %s", self._channel)
            return
        self._deliver(event)

    async def _listen_forever(self) -> None:
        delay = 0.05
        while not self._closing:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(
                    self._dsn,
                    timeout=self._connect_timeout,
                    server_settings={"application_name": LISTENER_APPLICATION_NAME},
                )
                lost = asyncio.Event()
                conn.add_termination_listener(partial(_set_event, lost))
                await conn.add_listener(self._channel, self._on_notification)
                self._listener = conn
                self._set_ready(True)
                delay = 0.05
                log.info("listening on %s (backend %s)", self._channel, conn.get_server_pid())
                await self._keep_alive(conn, lost)
                log.warning("the LISTEN connection was lost; reconnecting")
            except _CONNECTION_ERRORS as exc:
                log.warning("LISTEN connection failed (%s); retrying in %.2f s", exc, delay)
            finally:
                self._set_ready(False)
                self._listener = None
                if conn is not None:
                    # A lost or silent connection gets no goodbye (that would wait on a dead peer);
                    # only a clean shutdown closes gracefully.
                    if self._closing:
                        await _close_quietly(conn)
                    else:
                        conn.terminate()
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self._reconnect_max_delay)

    async def _keep_alive(self, conn: asyncpg.Connection, lost: asyncio.Event) -> None:
        """Return when the connection is gone: closed by the server, or a keepalive query failed
        (a half-open TCP connection otherwise looks alive until the OS gives up, minutes later)."""
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), timeout=self._keepalive_interval)
            if lost.is_set() or conn.is_closed():
                return
            await asyncio.wait_for(conn.fetchval("SELECT 1"), timeout=self._keepalive_timeout)

    async def _resolve_forever(self) -> None:
        while True:
            payload: str | None = await self._inbox.get()
            try:
                if payload is not None and payload.startswith(_REF_PREFIX):
                    payload = await self._fetch_reference(payload)
                if payload is not None:
                    self._decode_and_deliver(payload)
            finally:
                self._unresolved -= 1

    async def _fetch_reference(self, note: str) -> str | None:
        try:
            ref = int(note[len(_REF_PREFIX) : -1])
        except ValueError:
            log.warning("ignored a malformed reference on %s", self._channel)
            return None
        # Transient failures are retried here, holding back the events behind this one (order
        # first); the row itself is committed before the notification is sent, so it is there.
        delay = 0.05
        for attempt in range(6):
            try:
                if self._pool is None:
                    return None
                async with self._pool.acquire() as conn:
                    rows = await repo.fetch_payloads(conn, [ref])
            except _CONNECTION_ERRORS as exc:
                log.warning("cannot fetch broadcast payload %s (attempt %d): %s", ref, attempt + 1, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                continue
            if ref not in rows:
                log.warning(
                    "broadcast payload %s is gone (older than %s?); event lost", ref, self._payload_ttl
                )
                return None
            return rows[ref].decode()
        log.error("giving up on broadcast payload %s; event lost", ref)
        return None

    async def _cleanup_forever(self) -> None:
        while True:
            # Jitter: replicas started together do not all delete at the same moment.
            await asyncio.sleep(self._cleanup_interval * (0.75 + random.random() / 2))
            if self._pool is None:
                continue
            try:
                async with self._pool.acquire() as conn:
                    deleted = await repo.delete_payloads_older_than(conn, self._payload_ttl)
                if deleted:
                    log.debug("deleted %d old broadcast payloads", deleted)
            except _CONNECTION_ERRORS as exc:
                log.warning("broadcast payload cleanup failed: %s", exc)


async def _no_reset(conn: asyncpg.Connection) -> None:
    return None


def _set_event(event: asyncio.Event, *_args: object) -> None:
    event.set()


async def _close_quietly(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), timeout=2)
    except (TimeoutError, *_CONNECTION_ERRORS):
        conn.terminate()


def inline_notification(
    broadcaster: Broadcaster, database_url: str, events: Sequence[JobEvent]
) -> repo.Notification | None:
    """`events` as NOTIFYs that a statement on `database_url` sends itself, committed with what it
    writes; None unless `broadcaster` is PostgreSQL on that database (see
    PostgresBroadcaster.inline_notification)."""
    if not isinstance(broadcaster, PostgresBroadcaster):
        return None
    return broadcaster.inline_notification(database_url, events)
