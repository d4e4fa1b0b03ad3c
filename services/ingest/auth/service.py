"""Who is calling: an API key, a Firebase ID token, or (local development only) nobody at all.

Policy when a request carries credentials: a valid API key wins, then a valid Firebase token; if it
carries any credential and none is valid the request is refused, also in development mode (a wrong key
must not silently act as the local user). Without credentials, dev mode answers with the local user.

API-key lookups are cached for `key_cache_ttl` seconds under the key's SHA-256 (also failures, so a
client retrying a wrong key does not hit the database per request); a revoked key therefore keeps
working on this process until its entry expires.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass

from database.engine import Database
from database.repositories.users import UserRepository
from services.ingest.auth.cache import MISS, TTLCache
from services.ingest.auth.firebase import Credentials, FirebaseIdentity, FirebaseTokenVerifier

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class AuthenticatedUser:
    id: uuid.UUID
    name: str


class Authenticator:
    def __init__(
        self,
        database: Database,
        *,
        firebase: FirebaseTokenVerifier | None = None,
        dev_user: str | None = None,
        key_cache_ttl: float = 30.0,
    ) -> None:
        self.database = database
        self.firebase = firebase
        self.dev_user = dev_user
        self._keys: TTLCache[bytes, AuthenticatedUser | None] = TTLCache(key_cache_ttl)
        self._firebase_users: TTLCache[str, AuthenticatedUser] = TTLCache(key_cache_ttl)
        self._local: AuthenticatedUser | None = None

    async def authenticate(self, credentials: Credentials) -> AuthenticatedUser | None:
        """The caller, or None when the request must be refused with 401."""
        if credentials.api_key:
            user = await self._by_api_key(credentials.api_key)
            if user is not None:
                return user
        if credentials.bearer:
            user = await self._by_firebase_token(credentials.bearer)
            if user is not None:
                return user
        if credentials.api_key or credentials.bearer:
            return None
        if self.dev_user is not None:
            return await self.local_user()
        return None

    async def local_user(self) -> AuthenticatedUser:
        if self._local is None:
            assert self.dev_user is not None
            async with self.database.session() as session:
                user = await UserRepository(session).get_or_create(self.dev_user)
            self._local = AuthenticatedUser(user.id, user.name)
        return self._local

    async def _by_api_key(self, key: str) -> AuthenticatedUser | None:
        digest = hashlib.sha256(key.encode()).digest()
        cached = self._keys.get(digest)
        if cached is not MISS:
            return cached  # type: ignore[return-value]
        async with self.database.session() as session:
            user = await UserRepository(session).get_by_api_key(key)
        found = AuthenticatedUser(user.id, user.name) if user is not None else None
        self._keys.put(digest, found)
        return found

    async def _by_firebase_token(self, token: str) -> AuthenticatedUser | None:
        if self.firebase is None:
            return None
        identity = await self.firebase.verify(token)
        if identity is None:
            return None
        return await self._firebase_user(identity)

    async def _firebase_user(self, identity: FirebaseIdentity) -> AuthenticatedUser:
        cached = self._firebase_users.get(identity.uid)
        if cached is not MISS:
            return cached  # type: ignore[return-value]
        async with self.database.session() as session:
            user = await UserRepository(session).get_or_create_firebase(
                identity.uid, identity.email, identity.name
            )
        found = AuthenticatedUser(user.id, user.name)
        self._firebase_users.put(identity.uid, found)
        return found
