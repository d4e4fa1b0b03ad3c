"""Firebase ID tokens (the browser frontend's credential) and credential extraction for ingest.

`extract_credentials(headers, query_params)` finds what a request carries: `X-API-Key` (any case),
`Authorization: Bearer <x>`, or on a WebSocket handshake `?token=<x>`. A bearer value that looks like an
API key (ours: `cc_` + 43 URL-safe characters; Comfy Cloud's: `comfyui-…`) is an API key, anything else is
taken for a Firebase ID token.

`FirebaseTokenVerifier(project_id).verify(token)` returns a `FirebaseIdentity` or None; it never raises.

How verification works in production (FIREBASE_AUTH_EMULATOR_HOST unset): the project id comes from
FIREBASE_PROJECT_ID (`FirebaseTokenVerifier.from_env()`). firebase-admin's `verify_id_token` checks the
RS256 signature against Google's public keys for securetoken@system.gserviceaccount.com (fetched over HTTPS
from www.googleapis.com and cached as long as their Cache-Control allows), that `aud` is the project id,
`iss` is https://securetoken.google.com/<project id>, `sub` is non-empty and `exp`/`iat` are current.
That needs outbound HTTPS but no service account. `check_revoked=True` also asks the Identity Toolkit API
whether the user was disabled or its tokens revoked: one more call per verification, and that one needs
Application Default Credentials allowed to read users.

With FIREBASE_AUTH_EMULATOR_HOST set, firebase-admin checks neither signature nor expiry (emulator tokens
are unsigned), so this verifier checks the times itself and confirms each token against the emulator's
user record (exists, enabled, not revoked, same email). Emulator mode is refused unless the project id
starts with `demo-`: the variable set by mistake in production would otherwise accept forged tokens.

Results are cached for `cache_ttl` seconds (never past the token's `exp`) under the token's SHA-256, and
concurrent calls for one token share one verification. A revoked or disabled user's cached token keeps
working until its entry expires.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from database.repositories.users import API_KEY_PREFIX

log = logging.getLogger(__name__)

COMFY_API_KEY_PREFIX = "comfyui-"
EMULATOR_ENV = "FIREBASE_AUTH_EMULATOR_HOST"
PROJECT_ENV = "FIREBASE_PROJECT_ID"
MAX_TOKEN_LENGTH = 16 * 1024  # Firebase ID tokens are about 1 KB (custom claims are capped at 1000 bytes)


# ---------------------------------------------------------------------------------------------- credentials


@dataclass(frozen=True, slots=True)
class Credentials:
    api_key: str | None = None
    bearer: str | None = None  # a Firebase ID token (not yet verified)


def looks_like_api_key(value: str) -> bool:
    return value.startswith((API_KEY_PREFIX, COMFY_API_KEY_PREFIX))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            value = value.strip()
            if value:
                return value
    return None


def extract_credentials(
    headers: Mapping[str, str], query_params: Mapping[str, str] | None = None
) -> Credentials:
    """The API key and/or Firebase token a request carries; pass query_params only for WebSocket handshakes.

    Headers are matched in any case (a plain dict works as well as Starlette's Headers). Each field takes
    the first source that supplies it: `X-API-Key`, then `Authorization: Bearer`, then `?token=`. Which of
    the two fields wins when both are present is the caller's policy.
    """
    api_key: str | None = _header(headers, "x-api-key")
    bearer: str | None = None
    candidates = []
    authorization = _header(headers, "authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            candidates.append(value.strip())
    if query_params is not None:
        token = (query_params.get("token") or "").strip()
        if token:
            candidates.append(token)
    for value in candidates:
        if looks_like_api_key(value):
            api_key = api_key or value
        else:
            bearer = bearer or value
    return Credentials(api_key=api_key, bearer=bearer)


# ---------------------------------------------------------------------------------------------- verifier


@dataclass(frozen=True, slots=True)
class FirebaseIdentity:
    uid: str
    email: str | None
    name: str | None


@dataclass(slots=True)
class _Outcome:
    identity: FirebaseIdentity | None
    cacheable: bool  # False for transient failures (key fetch, emulator unreachable): retry next time
    token_exp: float | None = None


class _Rejected(Exception):
    """The token is definitively invalid (a cacheable None)."""


_app_lock = threading.Lock()
_MISS = object()


def _firebase_app(project_id: str, emulator_host: str | None, use_adc: bool) -> Any:
    """One named firebase_admin App per (project, emulator, credential kind), shared by verifiers."""
    import firebase_admin
    from firebase_admin import credentials

    class _NoCredentials(credentials.Base):
        # Token verification needs only the project id; this keeps firebase-admin from loading ADC.
        def get_credential(self) -> Any:
            from google.auth.credentials import AnonymousCredentials

            return AnonymousCredentials()

    name = f"comfy-cloud-auth:{project_id}:{emulator_host or 'google'}:{'adc' if use_adc else 'none'}"
    with _app_lock:
        try:
            return firebase_admin.get_app(name)
        except ValueError:
            credential = credentials.ApplicationDefault() if use_adc else _NoCredentials()
            options = {"projectId": project_id, "httpTimeout": 10}
            return firebase_admin.initialize_app(credential, options, name=name)


class FirebaseTokenVerifier:
    def __init__(
        self,
        project_id: str,
        *,
        check_revoked: bool = False,
        cache_ttl: float = 60.0,
        cache_size: int = 4096,
        clock_skew_seconds: int = 10,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not project_id:
            raise ValueError("a Firebase project id is required")
        if not 0 <= clock_skew_seconds <= 60:
            raise ValueError("clock_skew_seconds must be between 0 and 60")
        try:
            from firebase_admin import auth as firebase_auth
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("Firebase auth needs firebase-admin: pip install 'comfy-cloud[gcp]'") from exc
        self.project_id = project_id
        self.emulator_host = os.environ.get(EMULATOR_ENV) or None
        if self.emulator_host and not project_id.startswith("demo-"):
            raise ValueError(
                f"{EMULATOR_ENV} is set, which turns off token signature checks; refusing it for the "
                f"non-demo project {project_id!r} (use a demo-* project id with the emulator)"
            )
        if self.emulator_host:
            log.warning("Firebase ID tokens are checked against the emulator at %s", self.emulator_host)
        self.check_revoked = check_revoked
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self.clock_skew_seconds = clock_skew_seconds
        self.verifications = 0  # verifications actually run (cache misses)
        self._clock = clock
        self._auth = firebase_auth
        use_adc = check_revoked and not self.emulator_host
        self._app = _firebase_app(project_id, self.emulator_host, use_adc)
        self._cache: OrderedDict[bytes, tuple[float, FirebaseIdentity | None]] = OrderedDict()
        self._inflight: dict[
            bytes, tuple[asyncio.AbstractEventLoop, asyncio.Task[FirebaseIdentity | None]]
        ] = {}

    @classmethod
    def from_env(cls, **kwargs: Any) -> FirebaseTokenVerifier:
        """A verifier for FIREBASE_PROJECT_ID (honouring FIREBASE_AUTH_EMULATOR_HOST)."""
        project_id = os.environ.get(PROJECT_ENV, "").strip()
        if not project_id:
            raise ValueError(f"{PROJECT_ENV} is not set")
        return cls(project_id, **kwargs)

    async def verify(self, token: str) -> FirebaseIdentity | None:
        """The identity behind a valid ID token, or None for anything else; never raises."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            return None
        key = hashlib.sha256(token.encode()).digest()
        hit = self._cached(key)
        if hit is not _MISS:
            return hit  # type: ignore[return-value]
        loop = asyncio.get_running_loop()
        inflight = self._inflight.get(key)
        if inflight is not None and inflight[0] is loop:
            task = inflight[1]
        else:
            task = loop.create_task(self._verify_and_cache(key, token))
            self._inflight[key] = (loop, task)
            task.add_done_callback(lambda done: self._forget(key, done))
        # shield: one caller giving up (disconnect) must not cancel the others' shared verification.
        return await asyncio.shield(task)

    def clear_cache(self) -> None:
        self._cache.clear()

    # ------------------------------------------------------------------------------------------ internals

    def _cached(self, key: bytes) -> FirebaseIdentity | object | None:
        entry = self._cache.get(key)
        if entry is None:
            return _MISS
        if entry[0] <= self._clock():
            del self._cache[key]
            return _MISS
        self._cache.move_to_end(key)
        return entry[1]

    def _forget(self, key: bytes, task: asyncio.Task[FirebaseIdentity | None]) -> None:
        entry = self._inflight.get(key)
        if entry is not None and entry[1] is task:
            del self._inflight[key]

    async def _verify_and_cache(self, key: bytes, token: str) -> FirebaseIdentity | None:
        try:
            outcome = await asyncio.to_thread(self._verify_blocking, token)
        except Exception:  # e.g. the default executor shut down
            log.exception("Firebase token verification failed unexpectedly")
            return None
        if outcome.cacheable and self.cache_ttl > 0:
            expires = self._clock() + self.cache_ttl
            if outcome.token_exp is not None:
                expires = min(expires, outcome.token_exp)
            self._cache[key] = (expires, outcome.identity)
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return outcome.identity

    def _verify_blocking(self, token: str) -> _Outcome:
        from firebase_admin import exceptions as firebase_exceptions

        self.verifications += 1
        auth = self._auth
        try:
            claims = auth.verify_id_token(
                token,
                app=self._app,
                check_revoked=self.check_revoked and not self.emulator_host,
                clock_skew_seconds=self.clock_skew_seconds,
            )
            exp = self._check_times(claims)
            if self.emulator_host:
                self._confirm_with_emulator(claims)
        except (
            _Rejected,
            ValueError,
            firebase_exceptions.InvalidArgumentError,
            auth.UserNotFoundError,
        ) as exc:
            # Invalid, expired, revoked, disabled, wrong project or tenant, malformed: the same next time.
            log.debug("Firebase ID token rejected: %.200s", exc)
            return _Outcome(None, cacheable=True)
        except Exception as exc:
            # Certificate fetch or emulator call failed: not the token's fault, so not cached.
            log.warning("Firebase ID token could not be verified: %s: %s", type(exc).__name__, exc)
            return _Outcome(None, cacheable=False)
        identity = FirebaseIdentity(
            uid=claims["sub"], email=_str_or_none(claims.get("email")), name=_str_or_none(claims.get("name"))
        )
        return _Outcome(identity, cacheable=True, token_exp=exp)

    def _check_times(self, claims: Mapping[str, Any]) -> float:
        """exp in the future, iat and auth_time not; firebase-admin skips these in emulator mode."""
        now = self._clock()
        skew = self.clock_skew_seconds
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int | float) or not isinstance(iat, int | float):
            raise _Rejected("exp or iat missing")
        if exp <= now - skew:
            raise _Rejected("token expired")
        if iat > now + skew:
            raise _Rejected("token issued in the future")
        auth_time = claims.get("auth_time")
        if auth_time is not None and (not isinstance(auth_time, int | float) or auth_time > now + skew):
            raise _Rejected("auth_time in the future")
        return float(exp)

    def _confirm_with_emulator(self, claims: Mapping[str, Any]) -> None:
        """Emulator tokens are unsigned: hold the claims against the emulator's record of the user."""
        user = self._auth.get_user(claims["sub"], app=self._app)  # UserNotFoundError if unknown
        if user.disabled:
            raise _Rejected("user disabled")
        valid_after_ms = user.tokens_valid_after_timestamp or 0
        if claims["iat"] * 1000 < valid_after_ms:
            raise _Rejected("token revoked")
        if (claims.get("email") or None) != (user.email or None):
            raise _Rejected("email claim does not match the user")


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
