"""Registry changes: announced after their commit, never after a rollback, never raised."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference_farm.registry import Database, changes
from inference_farm.registry.catalog import add_version, create_model
from inference_farm.registry.db import utcnow
from inference_farm.registry.jobs import add_job, cancel_job, expire_overdue, start_job
from inference_farm.registry.migrate import upgrade


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'registry.db'}")
    upgrade(database)
    yield database
    database.remove()
    database.engine.dispose()


@pytest.fixture
def heard(database: Database) -> list[dict]:
    found: list[dict] = []
    changes.watch(database, found.extend)
    return found


def test_a_jobs_status_changes_are_announced_after_each_commit(
    database: Database, heard: list[dict]
) -> None:
    session = database.session()
    job = add_job(session, "infer", "tiny", "farm.model.tiny", api_key_id=None)
    assert heard == [changes.job_change(job.id, "tiny", "queued", None)]
    start_job(session, job.id)
    cancel_job(session, job)
    assert [c["status"] for c in heard] == ["queued", "running", "cancelled"]


def test_a_rolled_back_change_is_never_announced(database: Database, heard: list[dict]) -> None:
    session = database.session()
    model = create_model(session, "tiny")
    heard.clear()
    version = add_version(session, model, "1.0.0", status="pending")
    heard.clear()
    version.status = "ready"
    session.flush()
    session.rollback()
    assert heard == []
    version = session.merge(version)
    version.status = "failed"
    session.commit()
    assert heard == [{"type": "version", "model": "tiny", "model_id": model.id,
                      "version": "1.0.0", "status": "failed"}]  # fmt: skip


def test_a_write_that_changes_no_status_is_not_announced(
    database: Database, heard: list[dict]
) -> None:
    session = database.session()
    model = create_model(session, "tiny")
    version = add_version(session, model, "1.0.0", status="pending")
    heard.clear()
    version.description = "renamed"
    session.commit()
    assert heard == []


def test_bulk_expiry_announces_each_expired_job(database: Database, heard: list[dict]) -> None:
    session = database.session()
    past = utcnow() - dt.timedelta(seconds=5)
    overdue = add_job(session, "infer", "tiny", "q", deadline_at=past)
    add_job(session, "infer", "tiny", "q", deadline_at=utcnow() + dt.timedelta(hours=1))
    heard.clear()
    assert expire_overdue(session) == 1
    assert heard == [changes.job_change(overdue.id, "tiny", "expired", None)]


def test_a_failing_sink_never_fails_the_commit(database: Database) -> None:
    def broken(_changes: list[dict]) -> None:
        raise RuntimeError("the broker is gone")

    changes.watch(database, broken)
    job = add_job(database.session(), "infer", "tiny", "q")
    assert database.session().get(type(job), job.id).status == "queued"
