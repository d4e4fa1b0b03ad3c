"""Small builders for database tests."""

from __future__ import annotations

import uuid
from typing import Any

from database.engine import Database
from database.repositories.fleet import FleetRepository, Registration
from database.repositories.jobs import JobRepository, NewJob
from database.repositories.users import UserRepository

CATALOGUE: dict[str, Any] = {
    "EmptyImage": {"output_node": False},
    "ImageInvert": {"output_node": False},
    "SaveImage": {"output_node": True},
}
PROMPT = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "t"}},
}


async def make_user(db: Database, name: str | None = None, limit: int | None = None) -> uuid.UUID:
    async with db.session() as s:
        user = await UserRepository(s).get_or_create(name or f"user-{uuid.uuid4().hex[:8]}")
        if limit is not None:
            await UserRepository(s).set_max_concurrent_jobs(user.id, limit)
        return user.id


async def make_catalogue(db: Database, object_info: dict[str, Any] | None = None) -> str:
    async with db.session() as s:
        return await FleetRepository(s).put_catalogue(object_info or CATALOGUE)


async def make_instance(db: Database, catalogue: str, capacity: int = 1) -> uuid.UUID:
    instance_id = uuid.uuid4()
    async with db.session() as s:
        await FleetRepository(s).register(
            Registration(
                id=instance_id,
                address=f"http://127.0.0.1:1/{instance_id}",
                capacity=capacity,
                catalogue_hash=catalogue,
            )
        )
    return instance_id


async def make_jobs(
    db: Database, user_id: uuid.UUID, n: int, catalogue: str, *, priority: int = 0, **kw: Any
) -> list[uuid.UUID]:
    ids = []
    async with db.session() as s:
        repo = JobRepository(s)
        for _ in range(n):
            job = await repo.create(
                NewJob(
                    id=uuid.uuid4(),
                    user_id=user_id,
                    prompt=PROMPT,
                    required_nodes=["EmptyImage", "SaveImage"],
                    runnable_on=[catalogue],
                    priority=priority,
                    **kw,
                )
            )
            ids.append(job.id)
    return ids
