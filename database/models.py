"""SQLAlchemy models: the whole persistent state of comfy-cloud.

Tables: users, api_keys, jobs, history, files, outputs, file_relationships, user_data,
node_catalogues, inference_instances, broadcast_payloads.
Relationships are not mapped on purpose: repositories join explicitly, so no query loads lazily.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from database.job_states import ACTIVE_STATUSES, JobStatus

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSON = dict[str, Any]
Timestamp = DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dict[str, Any]: JSONB,
        list[Any]: JSONB,
        list[str]: ARRAY(Text),
        datetime: Timestamp,
        uuid.UUID: UUID(as_uuid=True),
        bytes: LargeBinary,
    }


def _now() -> Any:
    return mapped_column(Timestamp, server_default=func.now(), nullable=False)


def _status_check(column: str, values: list[str]) -> CheckConstraint:
    quoted = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({quoted})", name=f"{column}_valid")


class User(Base):
    __tablename__ = "users"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(Text, unique=True)
    email: Mapped[str | None] = mapped_column(Text)
    firebase_uid: Mapped[str | None] = mapped_column(Text, unique=True)
    # Per-user override of the dispatcher's concurrency limit (None: the configured default).
    max_concurrent_jobs: Mapped[int | None] = mapped_column(Integer)
    # Jobs holding worker capacity (assigned, in_progress, cancelling); kept by a trigger on jobs,
    # so the claim can honour the per-user limit under row lock without counting.
    active_jobs: Mapped[int] = mapped_column(Integer, server_default="0", default=0)
    # Round-robin key of fair claiming: users served longest ago go first.
    last_dispatched_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = _now()


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # SHA-256 of the key: the key itself is shown once and never stored.
    key_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _now()
    last_used_at: Mapped[datetime | None] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp)


# Sorted so the index predicates (and so the migrations) are deterministic.
_ACTIVE_SQL = ", ".join(f"'{s}'" for s in sorted(ACTIVE_STATUSES))


class Job(Base):
    __tablename__ = "jobs"

    # The ComfyUI prompt_id, end to end.
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.PENDING.value)
    # Higher runs first, across users; `number` orders one user's own queue (ComfyUI's meaning).
    priority: Mapped[int] = mapped_column(Integer, server_default="0", default=0)
    number: Mapped[float] = mapped_column(Double)
    prompt: Mapped[dict[str, Any]]
    extra_data: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    # Partner-node credentials, AES-GCM sealed; cleared when the job ends.
    sealed_secrets: Mapped[bytes | None]
    client_id: Mapped[str | None] = mapped_column(Text)
    outputs_to_execute: Mapped[list[Any]] = mapped_column(server_default=text("'[]'::jsonb"))
    required_nodes: Mapped[list[str]] = mapped_column(server_default=text("'{}'::text[]"))
    # Node catalogues (hashes) that offer every class of the prompt: capability routing.
    runnable_on: Mapped[list[str]] = mapped_column(server_default=text("'{}'::text[]"))
    workflow_id: Mapped[str | None] = mapped_column(Text)
    # Output media kinds (image, video, audio, 3d, text), for the jobs `output_type` filter.
    output_types: Mapped[list[str]] = mapped_column(server_default=text("'{}'::text[]"))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0", default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, server_default="3", default=3)
    instance_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("inference_instances.id", ondelete="SET NULL")
    )
    lease_expires_at: Mapped[datetime | None]
    execution_deadline_at: Mapped[datetime | None]
    queue_deadline_at: Mapped[datetime | None]
    error: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    assigned_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Removed from history by the user (POST /api/history {delete}); the row stays for accounting.
    deleted_at: Mapped[datetime | None]

    __table_args__ = (
        _status_check("status", [s.value for s in JobStatus]),
        # Fair claiming: per-user head of the queue, and the skip-scan over users with pending work.
        Index(
            "ix_jobs_pending_by_user",
            "user_id",
            text("priority DESC"),
            "number",
            "created_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index(
            "ix_jobs_active_by_instance",
            "instance_id",
            postgresql_where=text(f"status IN ({_ACTIVE_SQL})"),
        ),
        Index(
            "ix_jobs_active_lease",
            "lease_expires_at",
            postgresql_where=text(f"status IN ({_ACTIVE_SQL})"),
        ),
        Index("ix_jobs_user_created", "user_id", text("created_at DESC")),
        Index("ix_jobs_user_status_created", "user_id", "status", text("created_at DESC")),
        Index("ix_jobs_user_workflow", "user_id", "workflow_id"),
    )


class History(Base):
    """What ComfyUI keeps in memory as a history entry: outputs (names as the user sees them),
    the status with its timestamped messages, and node meta."""

    __tablename__ = "history"

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    outputs: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    status: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    meta: Mapped[dict[str, Any]] = mapped_column(server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class File(Base):
    """A user's named file (upload, output or temp). Content is stored once per hash."""

    __tablename__ = "files"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(8))
    subfolder: Mapped[str] = mapped_column(Text, server_default="", default="")
    filename: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(BigInteger)
    content_type: Mapped[str] = mapped_column(Text)
    storage_key: Mapped[str] = mapped_column(Text)
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _now()

    __table_args__ = (
        _status_check("type", ["input", "output", "temp"]),
        UniqueConstraint("user_id", "type", "subfolder", "filename"),
        Index("ix_files_user_type_created", "user_id", "type", text("created_at DESC")),
    )


class Output(Base):
    """One item of a job's outputs (`outputs[node_id][output_key][index]`)."""

    __tablename__ = "outputs"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    node_id: Mapped[str] = mapped_column(Text)
    output_key: Mapped[str] = mapped_column(Text)
    index: Mapped[int] = mapped_column(Integer)
    file_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("files.id", ondelete="SET NULL"))
    # The item exactly as the user sees it (rewritten filename/subfolder/type, or a text value).
    item: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = _now()

    # A retried upload of the same item hits this constraint instead of adding a row.
    __table_args__ = (UniqueConstraint("job_id", "node_id", "output_key", "index"),)


class FileRelationship(Base):
    """Which files a job read (inputs) and wrote (outputs)."""

    __tablename__ = "file_relationships"

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    file_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), index=True)
    relation: Mapped[str] = mapped_column(String(8))

    __table_args__ = (
        PrimaryKeyConstraint("job_id", "file_id", "relation"),
        _status_check("relation", ["input", "output"]),
    )


class UserData(Base):
    """A user's files under ComfyUI's user directory (workflows, settings, templates)."""

    __tablename__ = "user_data"

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    path: Mapped[str] = mapped_column(Text)
    content: Mapped[bytes]
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _now()
    modified_at: Mapped[datetime] = _now()

    __table_args__ = (PrimaryKeyConstraint("user_id", "path"),)


class NodeCatalogue(Base):
    """A ComfyUI `/object_info`, stored once per distinct content (workers usually share one)."""

    __tablename__ = "node_catalogues"

    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    object_info: Mapped[dict[str, Any]]
    node_classes: Mapped[list[str]]
    created_at: Mapped[datetime] = _now()


class InferenceInstance(Base):
    __tablename__ = "inference_instances"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    address: Mapped[str] = mapped_column(Text)
    capacity: Mapped[int] = mapped_column(Integer, server_default="1", default=1)
    status: Mapped[str] = mapped_column(String(16), server_default="live", default="live")
    healthy: Mapped[bool] = mapped_column(Boolean, server_default="true", default=True)
    catalogue_hash: Mapped[str | None] = mapped_column(ForeignKey("node_catalogues.hash"))
    comfyui_version: Mapped[str | None] = mapped_column(Text)
    system_stats: Mapped[dict[str, Any] | None]
    features: Mapped[dict[str, Any] | None]
    registered_at: Mapped[datetime] = _now()
    last_heartbeat_at: Mapped[datetime] = _now()

    __table_args__ = (_status_check("status", ["live", "lost", "draining"]),)


class BroadcastPayload(Base):
    """Event payloads too large for a NOTIFY (8000 bytes): the notification carries the id."""

    __tablename__ = "broadcast_payloads"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    payload: Mapped[bytes]
    created_at: Mapped[datetime] = _now()

    __table_args__ = (Index("ix_broadcast_payloads_created_at", "created_at"),)
