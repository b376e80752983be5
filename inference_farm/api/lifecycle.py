"""Model lifecycle: upload into the store, queue validation, retire versions and models."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from celery import Celery
from sqlalchemy.orm import Session

from inference_farm.broker import control
from inference_farm.broker.names import (
    CONTROL_QUEUE,
    EVICT_COMMAND,
    MODEL_ADDED_COMMAND,
    VALIDATE_TASK,
)
from inference_farm.errors import Conflict, InvalidInput, NotFound, Unavailable
from inference_farm.protocol import samples
from inference_farm.registry import catalog
from inference_farm.registry.jobs import add_job, finish_job
from inference_farm.registry.models import Model, ModelVersion
from inference_farm.storage import ArtifactStore, Staged, archives

log = logging.getLogger(__name__)


def announce_model(celery: Celery, name: str) -> None:
    """Tell all-models workers to start consuming a model's queue (idempotent)."""
    try:
        control.call(celery, "broadcast", MODEL_ADDED_COMMAND, arguments={"name": name})
    except Exception as exc:  # a worker started later subscribes from the registry
        log.warning("could not announce model %s to workers: %s", name, exc)


@dataclass(frozen=True)
class UploadOptions:
    """What an upload may carry besides its file, and the limits it is held to."""

    version: str | None = None
    description: str = ""
    warmup: bytes | None = None  # sample inputs: .npz or an OIP JSON request
    model_file: str | None = None  # the .onnx member of an archive holding several
    max_bytes: int = 2**31
    max_elements: int = 2**24
    limits: archives.Limits = field(default_factory=lambda: archives.Limits(2**31, 100.0))


def upload(
    session: Session,
    store: ArtifactStore,
    celery: Celery,
    name: str,
    stream: BinaryIO,
    options: UploadOptions | None = None,
) -> ModelVersion:
    """Store the file (a model, or an archive of one) and its warmup samples, create a pending
    version (and the model if new), and queue its validation.

    An archive with a member that may not be unpacked becomes a failed version at once."""
    catalog.check_name(name)
    options = options or UploadOptions()
    version = options.version
    if version is not None:
        catalog.parse_version(version)
        model = catalog.find_model(session, name)
        if model and any(v.version == version for v in model.versions):
            raise Conflict(f"version {version} of model {name!r} already exists")
    encoded = _warmup(options)  # 400 before anything is stored
    with store.stage(stream, options.max_bytes) as staged:
        fields, unsafe = _model_fields(staged, options)
        warmup = None
        if unsafe is None:
            artifact = store.commit(staged, fields["artifact_format"])
            fields["artifact_uri"] = artifact.uri
            if encoded is not None:
                warmup = store.put_stream(io.BytesIO(encoded), len(encoded), "warmup").sha256
    model = catalog.ensure_model(session, name)
    fields.update(warmup_sha256=warmup, description=options.description)
    if unsafe is not None:
        fields.update(status="failed", error=unsafe)
    try:
        record = catalog.add_version(session, model, version, **fields)
    except Conflict:
        _drop_artifacts(session, store, {staged.sha256, warmup})
        raise
    announce_model(celery, name)
    if unsafe is None:
        queue_validation(session, celery, record)
    return record


def _warmup(options: UploadOptions) -> bytes | None:
    """The upload's warmup samples in their stored form; 400 if malformed."""
    if options.warmup is None:
        return None
    return samples.encode(samples.parse(options.warmup, options.max_elements))


def _model_fields(staged: Staged, options: UploadOptions) -> tuple[dict[str, Any], str | None]:
    """The version's artifact fields, and the reason if it is an archive that may not unpack."""
    fmt = archives.format_of(staged.path)
    fields: dict[str, Any] = {
        "sha256": staged.sha256, "size_bytes": staged.size, "artifact_format": fmt,
    }  # fmt: skip
    if fmt == "onnx":
        if options.model_file:
            raise InvalidInput("model_file names a member of an archive; this upload is a model")
        return fields, None
    try:
        members = archives.list_members(staged.path, fmt, options.limits)
    except archives.UnsafeMember as exc:
        return fields, exc.message
    fields["archive_entry"] = archives.entry_of(members, options.model_file)
    return fields, None


def queue_validation(session: Session, celery: Celery, record: ModelVersion) -> None:
    """Put a validate job on the control queue; mark the version failed if that is impossible."""
    job = add_job(session, "validate", record.model.name, CONTROL_QUEUE, version=record.version)
    try:
        celery.send_task(
            VALIDATE_TASK,
            args=[record.id, job.id],
            task_id=job.id,
            queue=CONTROL_QUEUE,
            argsrepr=f"({record.model.name!r}, {record.version!r})",
        )
    except Exception as exc:  # the broker is unreachable: nothing will ever validate it
        reason = f"could not queue validation: the broker did not answer ({exc})"
        finish_job(session, job.id, "failed", reason)
        catalog.set_result(session, record.id, "failed", error=reason)
        raise Unavailable(reason) from None


def _broadcast_evict(celery: Celery, name: str, version: str | None) -> None:
    try:
        arguments = {"name": name, "version": version}
        control.call(celery, "broadcast", EVICT_COMMAND, arguments=arguments)
    except Exception as exc:  # workers drop idle sessions anyway, and never serve retired ones
        log.warning("could not tell workers to evict %s %s: %s", name, version or "*", exc)


def _drop_artifacts(session: Session, store: ArtifactStore, digests: set[str | None]) -> None:
    for digest in digests:
        if digest and catalog.unreferenced(session, digest):
            store.delete(digest)


def retire_version(
    session: Session, store: ArtifactStore, celery: Celery, record: ModelVersion
) -> ModelVersion:
    """Retire one version: stop serving it, evict it from workers, drop its unused artifact."""
    if record.status == "retired":
        raise NotFound(f"version {record.version} of {record.model.name!r} was deleted")
    catalog.retire(session, record)
    session.commit()
    _broadcast_evict(celery, record.model.name, record.version)
    _drop_artifacts(session, store, {record.sha256, record.warmup_sha256})
    return record


def delete_model(session: Session, store: ArtifactStore, celery: Celery, model: Model) -> None:
    """Retire every version of a model, then remove the model itself."""
    digests = {record.sha256 for record in model.versions}
    digests |= {record.warmup_sha256 for record in model.versions}
    for record in catalog.versions(model):
        catalog.retire(session, record)
    session.commit()
    _broadcast_evict(celery, model.name, None)
    session.delete(model)
    session.commit()
    _drop_artifacts(session, store, digests)
