"""Typed SQLAlchemy models: models, versions, API keys and jobs."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from inference_farm.registry.db import Base, UTCDateTime, utcnow

VERSION_STATUSES = ("pending", "ready", "failed", "retired")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "expired")
FINISHED_JOB_STATUSES = ("succeeded", "failed", "cancelled", "expired")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Timestamped:
    """Creation and update times, set by the ORM."""

    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Model(Timestamped, Base):
    """A named model; its versions hold the artifacts."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    # The version pinned by PATCH; None means "highest ready version".
    default_version: Mapped[str | None] = mapped_column(String(32))
    # Dynamic batching limits; None: the settings' defaults.
    max_batch_size: Mapped[int | None] = mapped_column(Integer)
    max_queue_delay_ms: Mapped[float | None] = mapped_column(Float)
    versions: Mapped[list[ModelVersion]] = relationship(
        back_populates="model", cascade="all, delete-orphan", passive_deletes=True
    )


class ModelVersion(Timestamped, Base):
    """One semantic version of a model: its artifact, signature and status."""

    __tablename__ = "model_versions"
    __table_args__ = (
        UniqueConstraint("model_id", "version"),
        CheckConstraint(_in("status", VERSION_STATUSES), name="status"),
        Index(None, "model_id", "major", "minor", "patch"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(32))
    major: Mapped[int] = mapped_column(Integer)
    minor: Mapped[int] = mapped_column(Integer)
    patch: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    description: Mapped[str] = mapped_column(Text, default="")
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    artifact_uri: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    signature: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    batchable: Mapped[bool] = mapped_column(Boolean, default=False)
    error: Mapped[str | None] = mapped_column(Text)
    load_time_ms: Mapped[float | None] = mapped_column(Float)
    memory_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # "onnx", or the archive ("zip", "tar") the .onnx file (archive_entry) came in.
    artifact_format: Mapped[str] = mapped_column(String(8), default="onnx", server_default="onnx")
    archive_entry: Mapped[str | None] = mapped_column(Text)
    warmup_sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    warnings: Mapped[list[str] | None] = mapped_column(JSON)
    # What the file says about itself: producer, opsets, doc_string, metadata_props.
    model_info: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    model: Mapped[Model] = relationship(back_populates="versions")


class ApiKey(Base):
    """An API key: only its hash is stored, with scopes and an optional model allowlist."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    models: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    # Per-key overrides of the rate limits and of the cap on queued jobs; None: the defaults.
    rate_per_second: Mapped[float | None] = mapped_column(Float)
    burst: Mapped[int | None] = mapped_column(Integer)
    max_queued_jobs: Mapped[int | None] = mapped_column(Integer)


def new_job_id() -> str:
    """A fresh job id."""
    return str(uuid.uuid4())


class Job(Base):
    """The durable record of one accepted job; its result lives in the result backend."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(_in("status", JOB_STATUSES), name="status"),
        Index(None, "api_key_id", "created_at"),
        Index(None, "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_job_id)
    kind: Mapped[str] = mapped_column(String(16), default="infer")
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    model_name: Mapped[str] = mapped_column(String(64))
    version: Mapped[str | None] = mapped_column(String(32))
    queue: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    priority: Mapped[int] = mapped_column(Integer, default=0)
    request_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    deadline_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    batch_id: Mapped[str | None] = mapped_column(String(36), index=True)
    # Deliveries so far: a job whose worker dies is redelivered, up to a cap.
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
