"""Capability routing: a job goes only to an instance whose ComfyUI has every node class it needs; a job
no live instance can run waits, visibly, until one can."""

from __future__ import annotations

import uuid
from typing import Any

from database.engine import Database
from database.repositories.fleet import catalogue_hash
from database.repositories.jobs import JobRepository, NewJob
from tests.database.helpers import CATALOGUE, PROMPT, make_catalogue, make_user
from tests.dispatcher.conftest import Env, eventually, status_of

BIG = {**CATALOGUE, "Upscale": {"output_node": False}}
UPSCALE_PROMPT = {**PROMPT, "3": {"class_type": "Upscale", "inputs": {"image": ["1", 0]}}}


async def submit(db: Database, user: uuid.UUID, prompt: dict[str, Any], runnable_on: list[str]) -> uuid.UUID:
    """Insert a job as ingest does: `runnable_on` = the catalogues that have every class."""
    async with db.session() as session:
        job = await JobRepository(session).create(
            NewJob(
                id=uuid.uuid4(),
                user_id=user,
                prompt=prompt,
                required_nodes=sorted({node["class_type"] for node in prompt.values()}),
                runnable_on=runnable_on,
            )
        )
    return job.id


async def test_jobs_go_only_to_instances_offering_every_class(env: Env) -> None:
    small, big = await make_catalogue(env.db, CATALOGUE), await make_catalogue(env.db, BIG)
    user = await make_user(env.db)
    upscale = [await submit(env.db, user, UPSCALE_PROMPT, [big]) for _ in range(3)]
    basic = [await submit(env.db, user, PROMPT, [small, big]) for _ in range(3)]
    dispatcher = await env.dispatcher()
    small_fake = await env.instance(dispatcher, CATALOGUE, capacity=10)
    big_fake = await env.instance(dispatcher, BIG, capacity=3)
    everything = set(upscale + basic)
    await eventually(
        lambda: {h.job_id for f in (small_fake, big_fake) for h in f.handoffs} == everything,
        message="all six handed out",
    )
    assert not {h.job_id for h in small_fake.handoffs} & set(upscale), "Upscale job sent to a small instance"
    assert {h.job_id for h in big_fake.handoffs} == set(upscale)


async def test_a_job_no_live_instance_can_run_waits_visibly_then_runs_on_a_new_catalogue(env: Env) -> None:
    dispatcher = await env.dispatcher()
    small_fake = await env.instance(dispatcher, CATALOGUE, capacity=5)
    user = await make_user(env.db)
    # Nobody offers Upscale: ingest finds no catalogue for it (runnable_on is empty).
    waiting = await submit(env.db, user, UPSCALE_PROMPT, [])
    runnable = await submit(env.db, user, PROMPT, [small_fake.catalogue])
    await eventually(lambda: small_fake.handoffs, message="the runnable job")
    await dispatcher.http.post("/dispatch")
    assert await status_of(env.db, waiting) == "pending"  # waits, not failed
    stats = (await dispatcher.http.get("/queue")).json()
    assert stats["waiting_for_capability"] == {"count": 1, "job_ids": [str(waiting)]}
    assert stats["depth"]["pending"] == 1 and stats["depth"]["assigned"] == 1
    metrics = await dispatcher.metrics()
    assert metrics["cc_dispatcher_jobs_waiting_for_capability"] == 1
    assert [h.job_id for h in small_fake.handoffs] == [runnable]

    # An instance with a new catalogue that offers Upscale arrives: PUT catalogue, register, dispatch.
    big_fake = await env.instance(dispatcher, BIG)
    await eventually(lambda: big_fake.handoffs, message="the waiting job, now routable")
    assert [h.job_id for h in big_fake.handoffs] == [waiting]
    stats = (await dispatcher.http.get("/queue")).json()
    assert stats["waiting_for_capability"]["count"] == 0


async def test_a_job_whose_only_capable_instance_is_lost_waits_for_capability(env: Env) -> None:
    dispatcher = await env.dispatcher(heartbeat_timeout=0.5)
    user = await make_user(env.db)
    big = await make_catalogue(env.db, BIG)
    big_fake = await env.instance(dispatcher, BIG, heartbeat_every=None)  # silent: will be lost
    await eventually(lambda: _state_of(env, dispatcher, big_fake.id, "lost"), message="instance marked lost")
    job = await submit(env.db, user, UPSCALE_PROMPT, [big])
    stats = (await dispatcher.http.get("/queue")).json()
    assert stats["waiting_for_capability"]["job_ids"] == [str(job)]
    await big_fake.register()  # it comes back: registering makes it live again
    await eventually(lambda: big_fake.handoffs, message="hand-off after re-registration")
    assert catalogue_hash(BIG) == big


async def _state_of(env: Env, dispatcher: Any, instance_id: uuid.UUID, state: str) -> bool:
    listed = (await dispatcher.http.get("/instances")).json()["instances"]
    return any(i["id"] == str(instance_id) and i["state"] == state for i in listed)
