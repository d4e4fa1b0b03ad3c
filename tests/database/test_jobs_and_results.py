"""Job creation, scoping, listing, history paging; idempotent outputs; an instance's one-statement
report; API keys."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest
from sqlalchemy import text

from database.engine import Database
from database.job_states import JobStatus, transition
from database.repositories.broadcast import Notification
from database.repositories.job_runs import load_job
from database.repositories.jobs import DuplicateJob, JobFilter, JobRepository, NewJob
from database.repositories.results import (
    FileSpec,
    JobRecord,
    OutputItem,
    ResultRepository,
    put_output_file,
    report,
)
from database.repositories.users import UserRepository
from tests.database.helpers import PROMPT, make_catalogue, make_instance, make_jobs, make_user


async def _finish(db: Database, job_id: uuid.UUID, status: JobStatus, outputs: dict | None = None) -> None:
    async with db.session() as s:
        await transition(s, job_id, JobStatus.ASSIGNED)
        await transition(s, job_id, JobStatus.IN_PROGRESS)
        await transition(s, job_id, status)
        user = await ResultRepository(s).job_owner(job_id)
        assert user is not None
        await ResultRepository(s).save_history(
            job_id=job_id,
            user_id=user,
            outputs=outputs or {},
            status={"status_str": "success"},
            meta={},
            output_types=["image"] if outputs else [],
        )


async def test_repeated_prompt_id_is_refused_for_owner_and_stranger(db: Database) -> None:
    owner, stranger = await make_user(db), await make_user(db)
    job_id = uuid.uuid4()
    async with db.session() as s:
        await JobRepository(s).create(NewJob(id=job_id, user_id=owner, prompt=PROMPT))
    for user in (owner, stranger):
        with pytest.raises(DuplicateJob):
            async with db.session() as s:
                await JobRepository(s).create(NewJob(id=job_id, user_id=user, prompt={"x": 1}))
    async with db.session() as s:
        assert await s.scalar(text("SELECT count(*) FROM jobs")) == 1
        job = await JobRepository(s).get(owner, job_id)
        assert job is not None and job.prompt == PROMPT  # the original is untouched


async def test_concurrent_duplicate_submissions_store_one_job(db: Database) -> None:
    user = await make_user(db)
    job_id = uuid.uuid4()

    async def submit() -> bool:
        try:
            async with db.session() as s:
                await JobRepository(s).create(NewJob(id=job_id, user_id=user, prompt=PROMPT))
            return True
        except DuplicateJob:
            return False

    assert sorted(await asyncio.gather(*(submit() for _ in range(6)))) == [False] * 5 + [True]


async def test_numbers_increase_and_explicit_number_is_kept(db: Database) -> None:
    user = await make_user(db)
    async with db.session() as s:
        repo = JobRepository(s)
        a = await repo.create(NewJob(id=uuid.uuid4(), user_id=user, prompt=PROMPT))
        b = await repo.create(NewJob(id=uuid.uuid4(), user_id=user, prompt=PROMPT))
        c = await repo.create(NewJob(id=uuid.uuid4(), user_id=user, prompt=PROMPT, number=5.0))
    assert b.number > a.number and c.number == 5.0


async def test_jobs_are_invisible_to_other_users(db: Database) -> None:
    catalogue = await make_catalogue(db)
    owner, other = await make_user(db), await make_user(db)
    [job_id] = await make_jobs(db, owner, 1, catalogue)
    async with db.session() as s:
        repo = JobRepository(s)
        assert await repo.get(other, job_id) is None
        assert await repo.get_with_history(other, job_id) is None
        assert (await repo.list(other, JobFilter()))[1] == 0
        assert await repo.queue_remaining(other) == 0
        assert await repo.pending_ids(other, [job_id]) == []
        assert await repo.hide_from_history(other, [job_id]) == 0


async def test_list_filters_sorts_and_pages(db: Database) -> None:
    catalogue = await make_catalogue(db)
    user = await make_user(db)
    ids = await make_jobs(db, user, 6, catalogue, workflow_id="wf-1")
    await make_jobs(db, user, 2, catalogue, workflow_id="wf-2")
    await _finish(db, ids[0], JobStatus.COMPLETED, {"9": {"images": [{"filename": "a.png"}]}})
    await _finish(db, ids[1], JobStatus.ERROR)
    async with db.session() as s:
        repo = JobRepository(s)
        page, total = await repo.list(user, JobFilter(limit=3, offset=0))
        assert total == 8 and len(page) == 3
        newest_first = [j.job.created_at for j in page]
        assert newest_first == sorted(newest_first, reverse=True)
        rest, _ = await repo.list(user, JobFilter(limit=10, offset=3))
        assert len(rest) == 5 and not {j.job.id for j in page} & {j.job.id for j in rest}
        done, total = await repo.list(user, JobFilter(statuses={JobStatus.COMPLETED, JobStatus.ERROR}))
        assert total == 2 and {j.job.id for j in done} == {ids[0], ids[1]}
        assert done[0].history is not None
        wf2, total = await repo.list(user, JobFilter(workflow_id="wf-2"))
        assert total == 2 and all(j.job.workflow_id == "wf-2" for j in wf2)
        images, total = await repo.list(user, JobFilter(output_types={"image"}))
        assert total == 1 and images[0].job.id == ids[0]
        by_duration, _ = await repo.list(
            user, JobFilter(statuses={JobStatus.COMPLETED, JobStatus.ERROR}, sort_by="execution_duration")
        )
        assert len(by_duration) == 2


async def test_list_uses_an_index_not_a_scan_of_all_jobs(db: Database) -> None:
    catalogue = await make_catalogue(db)
    user = await make_user(db)
    await make_jobs(db, user, 5, catalogue)
    async with db.session() as s:
        await s.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(
            r[0]
            for r in await s.execute(
                text(
                    "EXPLAIN SELECT * FROM jobs WHERE user_id = :u AND deleted_at IS NULL "
                    "ORDER BY created_at DESC LIMIT 20"
                ),
                {"u": user},
            )
        )
    assert "ix_jobs_user_created" in plan


async def test_history_page_follows_comfyui_paging(db: Database) -> None:
    catalogue = await make_catalogue(db)
    user = await make_user(db)
    ids = await make_jobs(db, user, 4, catalogue)
    for job_id in ids:
        await _finish(db, job_id, JobStatus.COMPLETED)
    async with db.session() as s:
        repo = JobRepository(s)
        assert [e.job.id for e in await repo.history_page(user, max_items=2, offset=None)] == ids[2:]
        assert [e.job.id for e in await repo.history_page(user, max_items=1, offset=0)] == ids[:1]
        assert len(await repo.history_page(user, max_items=None, offset=None)) == 4
        assert await repo.hide_from_history(user, [ids[0]]) == 1
        assert len(await repo.history_page(user, max_items=None, offset=None)) == 3
        assert await repo.get(user, ids[0]) is None


async def test_recording_an_output_twice_keeps_one_row(db: Database) -> None:
    catalogue = await make_catalogue(db)
    user = await make_user(db)
    [job_id] = await make_jobs(db, user, 1, catalogue)
    spec = FileSpec(
        user_id=user,
        type="output",
        subfolder="",
        filename="x_1234abcd.png",
        content_hash="ab" * 32,
        size=10,
        content_type="image/png",
        storage_key="sha256/ab/abab",
        job_id=job_id,
    )
    for _ in range(3):  # a retried upload
        async with db.session() as s:
            repo = ResultRepository(s)
            file = await repo.put_file(spec)
            await repo.record_output(
                job_id=job_id,
                user_id=user,
                node_id="9",
                output_key="images",
                index=0,
                item={"filename": spec.filename, "subfolder": "", "type": "output"},
                file_id=file.id,
            )
    async with db.session() as s:
        counts = [
            await s.scalar(text(f"SELECT count(*) FROM {t}"))
            for t in ("files", "outputs", "file_relationships")
        ]
        assert counts == [1, 1, 1]
        assert len(await ResultRepository(s).outputs_of(job_id)) == 1
        assert await ResultRepository(s).get_file(uuid.uuid4(), "output", "", spec.filename) is None


async def test_upload_without_overwrite_keeps_the_first_content(db: Database) -> None:
    user = await make_user(db)
    base = dict(user_id=user, type="input", subfolder="", filename="a.png", size=1, content_type="image/png")
    async with db.session() as s:
        repo = ResultRepository(s)
        await repo.put_file(FileSpec(**base, content_hash="1" * 64, storage_key="k1"))
        kept = await repo.put_file(FileSpec(**base, content_hash="2" * 64, storage_key="k2"), overwrite=False)
        assert kept.content_hash == "1" * 64
        replaced = await repo.put_file(FileSpec(**base, content_hash="2" * 64, storage_key="k2"))
        assert replaced.content_hash == "2" * 64
        assert await repo.file_names(user, "input") == ["a.png"]


async def _running_on(db: Database, instance_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID]:
    """A job of a new user, in progress on `instance_id`; (job, user)."""
    user = await make_user(db)
    [job_id] = await make_jobs(db, user, 1, await make_catalogue(db))
    async with db.session() as s:
        await s.execute(
            text("UPDATE jobs SET status = 'in_progress', instance_id = :i WHERE id = :id"),
            {"i": instance_id, "id": job_id},
        )
    return job_id, user


def _output_spec(user: uuid.UUID, job_id: uuid.UUID, content_hash: str) -> FileSpec:
    return FileSpec(
        user_id=user,
        type="output",
        subfolder="",
        filename=f"x_{job_id.hex[:8]}.png",
        content_hash=content_hash,
        size=10,
        content_type="image/png",
        storage_key=f"sha256/{content_hash[:2]}/{content_hash}",
        job_id=job_id,
    )


async def test_output_file_is_named_once_and_repointed(db: Database) -> None:
    instance = await make_instance(db, await make_catalogue(db))
    job_id, user = await _running_on(db, instance)
    async with db.raw() as conn:
        first = await put_output_file(conn, _output_spec(user, job_id, "ab" * 32))
        again = await put_output_file(conn, _output_spec(user, job_id, "cd" * 32))
    assert again == first
    async with db.session() as s:
        file = await ResultRepository(s).get_file(user, "output", "", f"x_{job_id.hex[:8]}.png")
    assert file is not None and file.id == first and file.content_hash == "cd" * 32


async def test_output_name_of_another_job_is_never_taken(db: Database) -> None:
    """Two jobs of one user whose ids share 8 hex digits give the same ComfyUI name the same short
    name: the second must not repoint the first one's file."""
    instance = await make_instance(db, await make_catalogue(db))
    job_id, user = await _running_on(db, instance)
    [other] = await make_jobs(db, user, 1, await make_catalogue(db))
    async with db.raw() as conn:
        first = await put_output_file(conn, _output_spec(user, job_id, "ab" * 32))
        clash = dataclasses.replace(_output_spec(user, other, "cd" * 32), filename=f"x_{job_id.hex[:8]}.png")
        assert await put_output_file(conn, clash) is None
    async with db.session() as s:
        file = await ResultRepository(s).get_file(user, "output", "", f"x_{job_id.hex[:8]}.png")
    assert file is not None and file.id == first and file.content_hash == "ab" * 32 and file.job_id == job_id


async def test_report_sends_its_notifications_only_when_it_moves_the_job(db: Database) -> None:
    instance = await make_instance(db, await make_catalogue(db))
    job_id, user = await _running_on(db, instance)
    record = JobRecord(outputs={}, status={"status_str": "success"}, meta={}, output_types=[], items=[])
    notify = Notification("cc_test_report", ["first", "second", "third"])
    args = dict(job_id=job_id, user_id=user, target=JobStatus.COMPLETED, error=None, record=record)
    heard: list[str] = []

    def hear(*args: object) -> None:
        heard.append(str(args[3]))  # (connection, pid, channel, payload)

    async with db.raw() as listener, db.raw() as conn:
        await listener.add_listener(notify.channel, hear)
        assert await report(conn, instance_id=uuid.uuid4(), notify=notify, **args) is None  # refused
        assert await report(conn, instance_id=instance, notify=notify, **args) is JobStatus.COMPLETED
        await listener.execute("SELECT 1")  # a round trip: notifications already sent have arrived
        await listener.remove_listener(notify.channel, hear)
    assert heard == ["first", "second", "third"]


async def test_report_ends_the_job_with_its_whole_record_in_one_statement(db: Database) -> None:
    instance = await make_instance(db, await make_catalogue(db))
    job_id, user = await _running_on(db, instance)
    item = {"filename": f"x_{job_id.hex[:8]}.png", "subfolder": "", "type": "output"}
    async with db.raw() as conn:
        file_id = await put_output_file(conn, _output_spec(user, job_id, "ab" * 32))
        record = JobRecord(
            outputs={"9": {"images": [item], "text": ["hi"]}},
            status={"status_str": "success", "completed": True, "messages": []},
            meta={"9": {"node_id": "9"}},
            output_types=["image"],
            items=[OutputItem("9", "images", 0, item, file_id), OutputItem("9", "text", 0, {"t": 1}, None)],
        )
        args = dict(job_id=job_id, user_id=user, target=JobStatus.COMPLETED, error=None, record=record)
        # Another instance's report is refused, and writes nothing.
        assert await report(conn, instance_id=uuid.uuid4(), **args) is None
        assert await conn.fetchval("SELECT count(*) FROM history WHERE job_id = $1", job_id) == 0
        assert await report(conn, instance_id=instance, **args) is JobStatus.COMPLETED
        # A repeated report finds the job ended: refused, nothing duplicated.
        assert await report(conn, instance_id=instance, **args) is None
        job = await load_job(conn, job_id)
    assert job is not None and job.status is JobStatus.COMPLETED and job.sealed_secrets is None
    async with db.session() as s:
        results = ResultRepository(s)
        history = await results.history_of(job_id)
        outputs = await results.outputs_of(job_id)
        links = await s.scalar(
            text("SELECT count(*) FROM file_relationships WHERE job_id = :j"), {"j": job_id}
        )
        row = (
            await s.execute(text("SELECT output_types, finished_at FROM jobs WHERE id = :j"), {"j": job_id})
        ).one()
    assert history is not None and history.outputs == record.outputs and history.meta == record.meta
    assert history.status == record.status and history.user_id == user
    assert [(o.output_key, o.item, o.file_id) for o in outputs] == [
        ("images", item, file_id),
        ("text", {"t": 1}, None),
    ]
    assert links == 1
    assert row.output_types == ["image"] and row.finished_at is not None


async def test_report_of_a_failure_records_its_error(db: Database) -> None:
    instance = await make_instance(db, await make_catalogue(db))
    job_id, user = await _running_on(db, instance)
    record = JobRecord(outputs={}, status={"status_str": "error"}, meta={}, output_types=[], items=[])
    async with db.raw() as conn:
        final = await report(
            conn,
            job_id=job_id,
            user_id=user,
            instance_id=instance,
            target=JobStatus.ERROR,
            error={"type": "execution_error", "message": "boom"},
            record=record,
        )
        error = await conn.fetchval("SELECT error::text FROM jobs WHERE id = $1", job_id)
    assert final is JobStatus.ERROR
    assert error == '{"type": "execution_error", "message": "boom"}'


async def test_api_keys_authenticate_until_revoked(db: Database) -> None:
    async with db.session() as s:
        users = UserRepository(s)
        alice = await users.get_or_create("alice")
        assert (await users.get_or_create("alice")).id == alice.id
        created = await users.create_api_key(alice.id, name="laptop")
    assert created.key.startswith("cc_") and len(created.key) > 40
    async with db.session() as s:
        users = UserRepository(s)
        found = await users.get_by_api_key(created.key)
        assert found is not None and found.id == alice.id
        assert await users.get_by_api_key(created.key + "x") is None
        stored = await s.scalar(
            text("SELECT count(*) FROM api_keys WHERE key_hash = :k"), {"k": created.key.encode()}
        )
        assert stored == 0  # only the hash is stored
        assert await users.revoke_api_key(alice.id, created.id)
        assert await users.get_by_api_key(created.key) is None


async def test_firebase_user_is_created_once(db: Database) -> None:
    async with db.session() as s:
        first = await UserRepository(s).get_or_create_firebase("uid-1", "a@example.com", "A")
    async with db.session() as s:
        again = await UserRepository(s).get_or_create_firebase("uid-1", "a@example.com", "A")
    assert first.id == again.id and first.email == "a@example.com"
