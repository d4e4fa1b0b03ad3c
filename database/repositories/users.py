"""Users and API keys. A key is `cc_` + 43 random URL-safe characters; only its SHA-256 is stored."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from database.models import ApiKey, User

API_KEY_PREFIX = "cc_"


def hash_api_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_api_key() -> str:
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class CreatedApiKey:
    id: uuid.UUID
    key: str  # shown once


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: uuid.UUID) -> User | None:
        return await self.session.get(User, user_id)

    async def get_by_name(self, name: str) -> User | None:
        return await self.session.scalar(select(User).where(User.name == name))

    async def get_or_create(self, name: str) -> User:
        """The user called `name`, created if needed (race-safe: concurrent callers get one user)."""
        stmt = insert(User).values(id=uuid.uuid4(), name=name).on_conflict_do_nothing(index_elements=["name"])
        await self.session.execute(stmt)
        user = await self.get_by_name(name)
        assert user is not None
        return user

    async def get_or_create_firebase(self, uid: str, email: str | None, display_name: str | None) -> User:
        """The user behind a Firebase uid; the first valid token creates it."""
        user = await self.session.scalar(select(User).where(User.firebase_uid == uid))
        if user is not None:
            return user
        stmt = (
            insert(User)
            .values(id=uuid.uuid4(), name=f"firebase:{uid}", email=email, firebase_uid=uid)
            .on_conflict_do_nothing()
        )
        await self.session.execute(stmt)
        user = await self.session.scalar(select(User).where(User.firebase_uid == uid))
        assert user is not None
        return user

    async def set_max_concurrent_jobs(self, user_id: uuid.UUID, limit: int | None) -> None:
        await self.session.execute(update(User).where(User.id == user_id).values(max_concurrent_jobs=limit))

    async def create_api_key(self, user_id: uuid.UUID, name: str | None = None) -> CreatedApiKey:
        key = new_api_key()
        row = ApiKey(id=uuid.uuid4(), user_id=user_id, key_hash=hash_api_key(key), prefix=key[:10], name=name)
        self.session.add(row)
        await self.session.flush()
        return CreatedApiKey(id=row.id, key=key)

    async def get_by_api_key(self, key: str) -> User | None:
        """The owner of a valid, unrevoked key."""
        row = (
            await self.session.execute(
                select(User, ApiKey.id)
                .join(ApiKey, ApiKey.user_id == User.id)
                .where(ApiKey.key_hash == hash_api_key(key), ApiKey.revoked_at.is_(None))
            )
        ).first()
        if row is None:
            return None
        # Record use at most once a minute: a write per request would serialize a busy key.
        await self.session.execute(
            update(ApiKey)
            .where(
                ApiKey.id == row[1],
                (ApiKey.last_used_at.is_(None)) | (ApiKey.last_used_at < func.now() - timedelta(minutes=1)),
            )
            .values(last_used_at=func.now())
        )
        return row[0]

    async def revoke_api_key(self, user_id: uuid.UUID, key_id: uuid.UUID) -> bool:
        stmt = (
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=func.now())
            .returning(ApiKey.id)
        )
        return await self.session.scalar(stmt) is not None
