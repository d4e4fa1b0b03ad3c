"""What jobs produce and consume: named files, output items, file relationships, history entries.
Writes are idempotent, so a retried upload or report never duplicates rows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Text, bindparam, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID, insert
from sqlalchemy.ext.asyncio import AsyncSession

from database.models import File, FileRelationship, History, Job, Output
from database.sql import load_queries


@dataclass(slots=True)
class FileSpec:
    user_id: uuid.UUID
    type: str
    subfolder: str
    filename: str
    content_hash: str
    size: int
    content_type: str
    storage_key: str
    job_id: uuid.UUID | None = None


# The write statements are built once, with bind parameters: building an INSERT and its cache key
# costs about half a millisecond, as much as sending it, and these run several times per job.
def _put_file_statement(*, overwrite: bool) -> Any:
    stmt = insert(File).values(id=bindparam("id"), **{k: bindparam(k) for k in FileSpec.__slots__})
    keys = ["user_id", "type", "subfolder", "filename"]
    if overwrite:
        stmt = stmt.on_conflict_do_update(
            index_elements=keys,
            set_={
                "content_hash": stmt.excluded.content_hash,
                "size": stmt.excluded.size,
                "content_type": stmt.excluded.content_type,
                "storage_key": stmt.excluded.storage_key,
                "job_id": stmt.excluded.job_id,
                "created_at": func.now(),
            },
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    return stmt.returning(File)


_PUT_FILE = {True: _put_file_statement(overwrite=True), False: _put_file_statement(overwrite=False)}
_LINK_FILE = (
    insert(FileRelationship)
    .values(job_id=bindparam("job_id"), file_id=bindparam("file_id"), relation=bindparam("relation"))
    .on_conflict_do_nothing()
)
_QUERIES = load_queries("results.sql")
_RECORD_OUTPUT = text(_QUERIES["record_output"]).bindparams(
    bindparam("id", type_=UUID), bindparam("job_id", type_=UUID), bindparam("user_id", type_=UUID),
    bindparam("file_id", type_=UUID), bindparam("item", type_=JSONB),
)  # fmt: skip
_SAVE_HISTORY = text(_QUERIES["save_history"]).bindparams(
    bindparam("job_id", type_=UUID), bindparam("user_id", type_=UUID), bindparam("outputs", type_=JSONB),
    bindparam("status", type_=JSONB), bindparam("meta", type_=JSONB), bindparam("types", type_=ARRAY(Text)),
)  # fmt: skip


class ResultRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def put_file(self, spec: FileSpec, *, overwrite: bool = True) -> File:
        """Name content for a user; an existing name is repointed (overwrite) or kept as it is."""
        params = {"id": uuid.uuid4(), **{k: getattr(spec, k) for k in FileSpec.__slots__}}
        # The row comes back with the statement (one round trip); populate_existing: the upsert
        # bypassed the ORM, so a File already in the session is stale.
        file = await self.session.scalar(
            _PUT_FILE[overwrite], params, execution_options={"populate_existing": True}
        )
        if file is None:  # an existing name kept as it is (overwrite=False): no row was returned
            file = await self.session.scalar(
                self._file_query(spec.user_id, spec.type, spec.subfolder, spec.filename).execution_options(
                    populate_existing=True
                )
            )
        assert file is not None
        return file

    async def get_file(self, user_id: uuid.UUID, type_: str, subfolder: str, filename: str) -> File | None:
        return await self.session.scalar(self._file_query(user_id, type_, subfolder, filename))

    @staticmethod
    def _file_query(user_id: uuid.UUID, type_: str, subfolder: str, filename: str) -> Select[tuple[File]]:
        return select(File).where(
            File.user_id == user_id,
            File.type == type_,
            File.subfolder == subfolder,
            File.filename == filename,
        )

    async def file_names(self, user_id: uuid.UUID, type_: str, subfolder: str = "") -> list[str]:
        """Names in one of the user's folders, newest first."""
        stmt = (
            select(File.filename)
            .where(File.user_id == user_id, File.type == type_, File.subfolder == subfolder)
            .order_by(File.created_at.desc())
        )
        return list(await self.session.scalars(stmt))

    async def record_output(
        self,
        *,
        job_id: uuid.UUID,
        user_id: uuid.UUID,
        node_id: str,
        output_key: str,
        index: int,
        item: dict[str, Any],
        file_id: uuid.UUID | None,
    ) -> None:
        params = {
            "id": uuid.uuid4(),
            "job_id": job_id,
            "user_id": user_id,
            "node_id": node_id,
            "output_key": output_key,
            "index": index,
            "item": item,
            "file_id": file_id,
        }
        await self.session.execute(_RECORD_OUTPUT, params)  # and the link to its file, if any

    async def link_file(self, job_id: uuid.UUID, file_id: uuid.UUID, relation: str) -> None:
        await self.session.execute(_LINK_FILE, {"job_id": job_id, "file_id": file_id, "relation": relation})

    async def outputs_of(self, job_id: uuid.UUID) -> list[Output]:
        stmt = (
            select(Output)
            .where(Output.job_id == job_id)
            .order_by(Output.node_id, Output.output_key, Output.index)
        )
        return list(await self.session.scalars(stmt))

    async def save_history(
        self,
        *,
        job_id: uuid.UUID,
        user_id: uuid.UUID,
        outputs: dict[str, Any],
        status: dict[str, Any],
        meta: dict[str, Any],
        output_types: list[str] | None = None,
    ) -> None:
        """Write (or rewrite) the history entry of a job, and the output kinds used by filters."""
        types = sorted(output_types) if output_types is not None else None
        params = {"job_id": job_id, "user_id": user_id, "outputs": outputs, "status": status, "meta": meta}
        await self.session.execute(_SAVE_HISTORY, {**params, "types": types})

    async def history_of(self, job_id: uuid.UUID) -> History | None:
        return await self.session.get(History, job_id)

    async def job_owner(self, job_id: uuid.UUID) -> uuid.UUID | None:
        return await self.session.scalar(select(Job.user_id).where(Job.id == job_id))
