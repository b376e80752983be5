"""Registry changes as they commit: a version's status, a job's status. Whoever opened the
Database (the API, a worker) passes them on, so that the console hears them at once."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from inference_farm.registry.db import Database
from inference_farm.registry.models import Job, Model, ModelVersion

log = logging.getLogger(__name__)
Change = dict[str, Any]
Sink = Callable[[list[Change]], None]
PENDING = "farm_changes"


def _status_changed(record: Any) -> bool:
    return bool(inspect(record).attrs.status.history.has_changes())


def describe(record: Any) -> Change | None:
    """The change one flushed record makes, or None when its status did not change."""
    if isinstance(record, Job) and _status_changed(record):
        return job_change(record.id, record.model_name, record.status, record.api_key_id)
    if isinstance(record, ModelVersion) and _status_changed(record):
        model = record.__dict__.get("model")  # never a lazy load inside a flush
        return {
            "type": "version", "model": getattr(model, "name", None), "model_id": record.model_id,
            "version": record.version, "status": record.status,
        }  # fmt: skip
    return None


def job_change(job_id: str, model: str, status: str, owner: int | None) -> Change:
    """The change of one job to status (owner: the id of the key that submitted it)."""
    return {"type": "job", "id": job_id, "model": model, "status": status, "owner": owner}


def note(session: Session, found: list[Change]) -> None:
    """Announce found with session's next commit (for bulk writes, which flush no records)."""
    session.info.setdefault(PENDING, []).extend(found)


def watch(database: Database, sink: Sink) -> Callable[[], None]:
    """Pass every committed status change of database's sessions to sink; returns the
    function that stops it (the listeners live as long as they are registered)."""
    factory = database.session.session_factory

    def flushed(session: Session, _context: Any) -> None:
        changes = [describe(record) for record in (*session.new, *session.dirty)]
        note(session, [change for change in changes if change is not None])

    def committed(session: Session) -> None:
        changes = session.info.pop(PENDING, None)
        if changes:
            _name_models(session.get_bind(), changes)
            deliver(sink, changes)

    def rolled_back(session: Session, _transaction: Any) -> None:
        session.info.pop(PENDING, None)

    listeners = (("after_flush", flushed), ("after_commit", committed),
                 ("after_soft_rollback", rolled_back))  # fmt: skip
    for name, listener in listeners:
        event.listen(factory, name, listener)

    def stop() -> None:
        for name, listener in listeners:
            if event.contains(factory, name, listener):
                event.remove(factory, name, listener)

    return stop


def _name_models(bind: Any, found: list[Change]) -> None:
    """Fill in the model name of version changes whose model was not loaded."""
    unnamed = {c["model_id"] for c in found if c["type"] == "version" and c["model"] is None}
    if not unnamed:
        return
    try:
        with bind.connect() as connection:
            names = dict(
                connection.execute(select(Model.id, Model.name).where(Model.id.in_(unnamed))).all()
            )
    except SQLAlchemyError as exc:
        log.warning("naming the models of registry changes failed: %s", exc)
        return
    for change in found:
        if change["type"] == "version" and change["model"] is None:
            change["model"] = names.get(change["model_id"])


def deliver(sink: Sink, changes: list[Change]) -> None:
    """sink(changes); a failing sink is logged, never raised into the commit that made them."""
    try:
        sink(changes)
    except Exception as exc:  # the record is written; only its announcement is lost
        log.warning("announcing %d registry change(s) failed: %s", len(changes), exc)
