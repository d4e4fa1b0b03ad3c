"""Job events from producers to every ingest replica: `open_broadcaster(url, database_url)`.

Backend by `url` (the BROADCAST_URL setting):
* unset, "", "postgres"                  PostgreSQL LISTEN/NOTIFY on the application database
* "postgresql://..."                     PostgreSQL LISTEN/NOTIFY on that database
* "supabase"                             Supabase Realtime at SUPABASE_URL
* "supabase://<project-ref>"             Supabase Realtime at https://<project-ref>.supabase.co
* "supabase://<host[:port]>"             Supabase Realtime at https://<host[:port]> (self-hosted)
* "https://..." / "http://..."           Supabase Realtime at that URL (e.g. http://127.0.0.1:54321)
* "memory"                               InProcessBroadcaster: one process only (tests, `up`)
Supabase URLs take `?channel=<name>` (default `comfy_cloud_events`) and `?private=false` (default: a
private channel, see supabase.py); the API key always comes from SUPABASE_KEY (never from the URL,
which ends up in logs): the service-role key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit, urlunsplit

from comfy_cloud.broadcast.base import Broadcaster
from comfy_cloud.broadcast.events import JobEvent
from comfy_cloud.broadcast.memory import InProcessBroadcaster
from comfy_cloud.broadcast.postgres import PostgresBroadcaster
from comfy_cloud.broadcast.subscription import BroadcastError, Subscription, SubscriptionOverflow
from comfy_cloud.broadcast.supabase import SupabaseBroadcaster

__all__ = [
    "BroadcastError",
    "Broadcaster",
    "InProcessBroadcaster",
    "JobEvent",
    "PostgresBroadcaster",
    "Subscription",
    "SubscriptionOverflow",
    "SupabaseBroadcaster",
    "open_broadcaster",
]

DEFAULT_CHANNEL = "comfy_cloud_events"
_CHANNEL = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


def open_broadcaster(
    url: str | None, database_url: str, *, env: Mapping[str, str] | None = None, listen: bool = True
) -> Broadcaster:
    """`listen=False` for a process that only publishes (the PostgreSQL backend then opens no LISTEN
    connection; subscribing raises)."""
    env = os.environ if env is None else env
    spec = (url or "").strip()
    if spec.lower() in {"", "postgres", "postgresql"}:
        return PostgresBroadcaster(database_url, listen=listen)
    if spec.lower() in {"memory", "inprocess"}:
        return InProcessBroadcaster()
    parts = urlsplit(spec)
    scheme = parts.scheme.lower()
    if scheme in {"postgres", "postgresql", "postgresql+asyncpg"}:
        return PostgresBroadcaster(spec, listen=listen)

    channel, private = DEFAULT_CHANNEL, True
    if spec.lower() == "supabase":
        supabase_url = env.get("SUPABASE_URL", "").strip()
        if not supabase_url:
            raise ValueError("BROADCAST_URL=supabase needs SUPABASE_URL")
    elif scheme in {"supabase", "http", "https"}:
        if not parts.netloc or parts.fragment:
            raise ValueError(f"invalid Supabase broadcast URL: {_redacted(spec)}")
        channel, private = _channel_options(parts.query, spec)
        if scheme == "supabase":
            host = parts.netloc
            # A bare project ref names a hosted project; anything with a dot or port is a host.
            netloc = host if ("." in host or ":" in host) else f"{host}.supabase.co"
            supabase_url = urlunsplit(("https", netloc, parts.path.rstrip("/"), "", ""))
        else:
            supabase_url = urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
    else:
        raise ValueError(
            f"unsupported broadcast URL {_redacted(spec)}: use postgres, a postgresql:// URL, supabase, "
            "supabase://<project-ref>, an https:// Supabase URL, or memory"
        )
    key = env.get("SUPABASE_KEY", "").strip()
    if not key:
        raise ValueError("the Supabase broadcaster needs SUPABASE_KEY")
    return SupabaseBroadcaster(supabase_url, key, channel, private=private)


def _channel_options(query: str, spec: str) -> tuple[str, bool]:
    values = parse_qs(query, keep_blank_values=True)
    unknown = set(values) - {"channel", "private"}
    if unknown:
        raise ValueError(f"unknown broadcast URL parameters {sorted(unknown)}: {_redacted(spec)}")
    channel = values.get("channel", [DEFAULT_CHANNEL])[-1]
    if not _CHANNEL.fullmatch(channel):
        raise ValueError(f"invalid channel name {channel!r}")
    private = values.get("private", ["true"])[-1].lower()
    if private not in {"true", "false"}:
        raise ValueError(f"private must be true or false: {private!r}")
    return channel, private == "true"


def _redacted(spec: str) -> str:
    parts = urlsplit(spec)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return spec
