"""Job events over Supabase Realtime broadcast (the `supabase` client's Realtime channels).

Every process joins one channel (`comfy_cloud_events` by default) with `broadcast.self = true`, so its
own subscribers get its own events too (as with PostgreSQL), and `broadcast.ack = true`, so `publish()`
returns only once the Realtime server accepted every message (or raises BroadcastError).

The channel is private by default: Realtime then authorizes joins and sends against RLS policies on
`realtime.messages`, which the service-role key bypasses. A public channel could be joined by anyone
holding the project's anon key (often shipped to browsers) and would show them every user's events.
Use the service-role key (server side only), or add policies for the key's role. Messages of one
socket reach each subscriber in the order they were sent (Phoenix channels are sequential), and one
`publish()` sends its messages one after another on the one socket: the publish order is kept.

Size limit: Realtime refuses broadcast payloads over 256 KB on the Free plan (3,000 KB on Pro; a
project setting), and the Python client itself closes its socket on any received frame over 1 MiB
(the `websockets` default). An event whose message would exceed `max_message_bytes` (200,000 bytes,
under the Free limit with room for the envelope) is split into numbered chunks, sent in a row and
reassembled by receivers; incomplete chunk sets are dropped after a minute. Previews (ComfyUI sends at
most ~512 px JPEGs) fit in one message; large `executed` outputs are what gets chunked. Each chunk
counts against the plan's messages-per-second quota (100/s on Free).

Reconnects: the client reconnects and rejoins by itself (a few attempts); a watchdog restarts it when
it has given up. Events sent while a process is disconnected are lost (`ready` is false meanwhile), as
with PostgreSQL: consumers re-read state from the database.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from comfy_cloud.broadcast.base import Broadcaster
from comfy_cloud.broadcast.events import JobEvent
from comfy_cloud.broadcast.subscription import DEFAULT_MAX_QUEUED, BroadcastError

if TYPE_CHECKING:
    from realtime import AsyncRealtimeChannel
    from realtime._async.push import AsyncPush
    from supabase import AsyncClient

log = logging.getLogger(__name__)

CHANNEL = "comfy_cloud_events"
EVENT = "job_event"
DEFAULT_MAX_MESSAGE_BYTES = 200_000
_CHUNK_TTL_SECONDS = 60.0
# Room for the chunk header ({"m": ..., "i": ..., "n": ...}) within the message limit.
_CHUNK_HEADER_BYTES = 200


@dataclass(slots=True)
class _Partial:
    total: int
    started: float
    parts: dict[int, str] = field(default_factory=dict)


class SupabaseBroadcaster(Broadcaster):
    def __init__(
        self,
        url: str,
        key: str,
        channel: str = CHANNEL,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        private: bool = True,
        timeout: float = 10.0,
        watchdog_interval: float = 1.0,
        max_queued: int = DEFAULT_MAX_QUEUED,
        hard_limit: int | None = None,
    ) -> None:
        super().__init__(max_queued=max_queued, hard_limit=hard_limit)
        if not url or not key:
            raise ValueError("SupabaseBroadcaster needs the project URL and an API key")
        if max_message_bytes < 4 * _CHUNK_HEADER_BYTES:
            raise ValueError("max_message_bytes is too small")
        self._url = url
        self._key = key
        self._channel_name = channel
        self._private = private
        self._max_message = max_message_bytes
        self._timeout = timeout
        self._watchdog_interval = watchdog_interval
        self._client: AsyncClient | None = None
        self._channel: AsyncRealtimeChannel | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._instance = uuid.uuid4().hex[:12]
        self._message_ids = itertools.count()
        self._partials: dict[str, _Partial] = {}
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._client is not None:
            return
        from realtime import RealtimeSubscribeStates
        from supabase import AsyncClientOptions, acreate_client

        self._closing = False
        options = AsyncClientOptions(
            auto_refresh_token=False,
            persist_session=False,
            realtime={
                "auto_reconnect": True,
                "max_retries": 5,
                "initial_backoff": 0.2,
                "timeout": int(self._timeout),
            },
        )
        try:
            self._client = await acreate_client(self._url, self._key, options)
            channel = self._client.channel(
                self._channel_name,
                {
                    "config": {
                        "broadcast": {"ack": True, "self": True},
                        "presence": {"key": "", "enabled": False},
                        "private": self._private,
                    }
                },
            )
            channel.on_broadcast(EVENT, self._on_broadcast)
            self._channel = channel

            def on_state(state: RealtimeSubscribeStates, error: Exception | None) -> None:
                self._set_ready(state == RealtimeSubscribeStates.SUBSCRIBED)
                if error is not None and not self._closing:
                    log.warning("Realtime channel %s: %s (%s)", self._channel_name, state.value, error)

            await asyncio.wait_for(channel.subscribe(on_state), timeout=self._timeout + 1)
        except Exception as exc:  # the client raises plain Exceptions for connection failures
            await self.close()
            raise BroadcastError(
                f"cannot join Supabase Realtime channel {self._channel_name}: {exc}"
            ) from exc
        if not channel.is_joined:
            await self.close()
            raise BroadcastError(f"Supabase Realtime refused to join channel {self._channel_name}")
        self._set_ready(True)
        self._watchdog = asyncio.create_task(self._watch(), name="broadcast-supabase-watchdog")

    async def close(self) -> None:
        self._closing = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None
        self._set_ready(False)
        if self._client is not None:
            try:
                await asyncio.wait_for(self._client.realtime.remove_all_channels(), timeout=self._timeout)
            except Exception as exc:
                log.debug("closing the Realtime client: %s", exc)
                await self._client.realtime.close()
            self._client = None
            self._channel = None
        self._partials.clear()
        self._end_subscriptions()

    async def _watch(self) -> None:
        """The client retries a lost socket only a few times; after that, reconnect from here."""
        delay = self._watchdog_interval
        while True:
            await asyncio.sleep(delay)
            client, channel = self._client, self._channel
            if client is None or channel is None:
                return
            self._set_ready(client.realtime.is_connected and channel.is_joined)
            if client.realtime.is_connected:
                delay = self._watchdog_interval
                continue
            try:
                await client.realtime.connect()  # rejoins the errored channel on success
                delay = self._watchdog_interval
            except Exception as exc:
                log.warning("Supabase Realtime reconnect failed: %s", exc)
                delay = min(delay * 2, 30.0)

    # -- publishing --------------------------------------------------------------------------------

    async def publish(self, events: Sequence[JobEvent]) -> None:
        if not events:
            return
        channel = self._channel
        if channel is None or self._closing:
            raise BroadcastError("the broadcaster is not started")
        if not self.ready:
            try:
                async with asyncio.timeout(self._timeout):
                    await self.wait_ready()
            except TimeoutError:
                raise BroadcastError("not connected to Supabase Realtime") from None
        acks: list[asyncio.Future[None]] = []
        try:
            for event in events:
                for message in self._messages(event):
                    push = await channel.push(
                        "broadcast", {"type": "broadcast", "event": EVENT, "payload": message}
                    )
                    acks.append(_acknowledgement(push))
            await asyncio.wait_for(asyncio.gather(*acks), timeout=self._timeout + 1)
        except BroadcastError:
            raise
        except Exception as exc:
            raise BroadcastError(
                f"cannot publish {len(events)} event(s) to Supabase Realtime: {exc}"
            ) from exc
        finally:
            for ack in acks:
                ack.cancel()

    def _messages(self, event: JobEvent) -> list[dict[str, Any]]:
        text = event.to_json()
        single = {"e": text}
        if _json_size(single) <= self._max_message:
            return [single]
        pieces = _split(text, self._max_message - _CHUNK_HEADER_BYTES)
        message_id = f"{self._instance}:{next(self._message_ids)}"
        log.debug("event %s/%s split into %d Realtime messages", event.job_id, event.type, len(pieces))
        return [{"m": message_id, "i": i, "n": len(pieces), "c": piece} for i, piece in enumerate(pieces)]

    # -- receiving ---------------------------------------------------------------------------------

    def _on_broadcast(self, broadcast: Any) -> None:
        message = broadcast.get("payload") if isinstance(broadcast, dict) else None
        if not isinstance(message, dict):
            return
        text = message.get("e") if "e" in message else self._reassemble(message)
        if not isinstance(text, str):
            return
        try:
            event = JobEvent.from_json(text)
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed Realtime message on %s", self._channel_name)
            return
        self._deliver(event)

    def _reassemble(self, message: dict[str, Any]) -> str | None:
        try:
            message_id, index, total, piece = message["m"], int(message["i"]), int(message["n"]), message["c"]
        except (KeyError, TypeError, ValueError):
            return None
        now = time.monotonic()
        for stale in [k for k, p in self._partials.items() if now - p.started > _CHUNK_TTL_SECONDS]:
            log.warning("dropped an incomplete chunked Realtime message %s", stale)
            del self._partials[stale]
        partial = self._partials.setdefault(message_id, _Partial(total=total, started=now))
        partial.parts[index] = piece
        if len(partial.parts) < partial.total:
            return None
        del self._partials[message_id]
        return "".join(partial.parts[i] for i in range(partial.total))


def _acknowledgement(push: AsyncPush) -> asyncio.Future[None]:
    """A future for the server's reply to one push (`broadcast.ack = true`)."""
    from realtime.types import RealtimeAcknowledgementStatus as Status

    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def settle(error: BaseException | None) -> None:
        if not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)

    # receive() runs the callback at once if the reply already arrived.
    push.receive(Status.Ok, lambda _response: settle(None))
    push.receive(
        Status.Error, lambda response: settle(BroadcastError(f"Realtime refused a message: {response}"))
    )
    push.receive(Status.Timeout, lambda: settle(BroadcastError("Realtime did not acknowledge a message")))
    return future


def _json_size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def _split(text: str, limit: int) -> list[str]:
    """Cut `text` into pieces whose JSON string encoding fits in `limit` bytes. Escaping (quotes,
    backslashes) makes a piece longer than its text: a piece that does not fit is shortened in
    proportion to its excess until it does."""
    pieces: list[str] = []
    start = 0
    while start < len(text):
        size = limit
        while size > 1 and (encoded := _json_size(text[start : start + size])) > limit:
            size = max(1, size * limit // encoded - 1)
        pieces.append(text[start : start + size])
        start += size
    return pieces
