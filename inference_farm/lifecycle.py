"""Model lifecycle: upload into the store, queue validation, retire versions and models."""

from __future__ import annotations

import logging
from typing import BinaryIO

from celery import Celery
from sqlalchemy.orm import Session

from inference_farm import control
from inference_farm.celery_app import CONTROL_QUEUE
from inference_farm.errors import Conflict, NotFound, Unavailable
from inference_farm.registry import catalog
from inference_farm.registry.jobs import add_job, finish_job
from inference_farm.registry.models import Model, ModelVersion
from inference_farm.storage import ArtifactStore

log = logging.getLogger(__name__)
VALIDATE_TASK = "farm.validate"
EVICT_COMMAND = "farm_evict"
MODEL_ADDED_COMMAND = "farm_model_added"


def announce_model(celery: Celery, name: str) -> None:
    """Tell all-models workers to start consuming a model's queue (idempotent)."""
    try:
        control.call(celery, "broadcast", MODEL_ADDED_COMMAND, arguments={"name": name})
    except Exception as exc:  # a worker started later subscribes from the registry
        log.warning("could not announce model %s to workers: %s", name, exc)


def upload(
    session: Session,
    store: ArtifactStore,
    celery: Celery,
    name: str,
    stream: BinaryIO,
    version: str | None = None,
    description: str = "",
    max_bytes: int = 2**31,
) -> ModelVersion:
    """Store the file, create a pending version (and the model if new), queue its validation."""
    catalog.check_name(name)
    if version is not None:
        catalog.parse_version(version)
        model = catalog.find_model(session, name)
        if model and any(v.version == version for v in model.versions):
            raise Conflict(f"version {version} of model {name!r} already exists")
    artifact = store.put_stream(stream, max_bytes)
    model = catalog.ensure_model(session, name)
    try:
        record = catalog.add_version(
            session,
            model,
            version,
            description=description,
            sha256=artifact.sha256,
            artifact_uri=artifact.uri,
            size_bytes=artifact.size,
        )
    except Conflict:
        if catalog.unreferenced(session, artifact.sha256):
            store.delete(artifact.sha256)
        raise
    announce_model(celery, name)
    queue_validation(session, celery, record)
    return record


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
    _drop_artifacts(session, store, {record.sha256})
    return record


def delete_model(session: Session, store: ArtifactStore, celery: Celery, model: Model) -> None:
    """Retire every version of a model, then remove the model itself."""
    digests = {record.sha256 for record in model.versions}
    for record in catalog.versions(model):
        catalog.retire(session, record)
    session.commit()
    _broadcast_evict(celery, model.name, None)
    session.delete(model)
    session.commit()
    _drop_artifacts(session, store, digests)
