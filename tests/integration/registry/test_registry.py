"""Registry rows on real PostgreSQL and SQLite: constraints, cascades, timestamps, API keys."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from inference_farm.registry import ApiKey, Database, Job, Model, ModelVersion
from inference_farm.registry.db import utcnow
from inference_farm.registry.keys import create_key, verify_key


def _version(model: Model, version: str = "1.0.0", **fields: object) -> ModelVersion:
    major, minor, patch = (int(part) for part in version.split("."))
    return ModelVersion(
        model=model, version=version, major=major, minor=minor, patch=patch, **fields
    )


def test_model_with_versions_round_trips(database: Database) -> None:
    session = database.session()
    model = Model(name="tiny", description="a tiny MLP")
    _version(model, "1.0.0", signature={"inputs": [{"name": "x", "shape": [-1, 4]}]})
    _version(model, "1.1.0", status="ready")
    session.add(model)
    session.commit()
    database.remove()

    loaded = database.session().scalars(select(Model).where(Model.name == "tiny")).one()
    versions = {v.version: v for v in loaded.versions}
    assert set(versions) == {"1.0.0", "1.1.0"}
    assert versions["1.0.0"].status == "pending"
    assert versions["1.0.0"].signature == {"inputs": [{"name": "x", "shape": [-1, 4]}]}
    assert versions["1.1.0"].created_at.tzinfo == dt.timezone.utc
    assert abs(utcnow() - versions["1.1.0"].created_at) < dt.timedelta(minutes=1)


def test_duplicate_model_name_is_rejected(database: Database) -> None:
    session = database.session()
    session.add(Model(name="dup"))
    session.commit()
    session.add(Model(name="dup"))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


def test_duplicate_version_of_a_model_is_rejected(database: Database) -> None:
    session = database.session()
    model = Model(name="m")
    _version(model, "1.0.0")
    session.add(model)
    session.commit()
    session.add(_version(model, "1.0.0"))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


@pytest.mark.parametrize("table", ["version", "job"])
def test_unknown_status_is_rejected_by_the_database(database: Database, table: str) -> None:
    session = database.session()
    model = Model(name="s")
    if table == "version":
        session.add(_version(model, "1.0.0", status="bogus"))
    else:
        session.add(Job(model_name="s", queue="farm.model.s", status="bogus"))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()


def test_deleting_a_model_cascades_to_its_versions(database: Database) -> None:
    session = database.session()
    model = Model(name="gone")
    _version(model, "1.0.0")
    session.add(model)
    session.commit()
    session.delete(model)
    session.commit()
    assert session.scalars(select(ModelVersion)).all() == []


def test_deleting_a_key_keeps_its_jobs(database: Database) -> None:
    session = database.session()
    key = create_key(session, "owner", ["jobs"]).record
    job = Job(model_name="m", queue="farm.model.m", api_key_id=key.id)
    session.add(job)
    session.commit()
    session.delete(key)
    session.commit()
    database.remove()
    kept = database.session().get(Job, job.id)
    assert kept is not None and kept.api_key_id is None
    assert kept.status == "queued" and len(kept.id) == 36


def test_key_secret_is_stored_only_as_a_hash(database: Database) -> None:
    created = create_key(database.session(), "ci", ["infer", "infer", "models:read"])
    database.remove()
    stored = database.session().get(ApiKey, created.record.id)
    assert stored.scopes == ["infer", "models:read"]
    assert created.secret not in (stored.secret_hash, stored.prefix)
    assert created.secret.startswith(f"ifk_{stored.prefix}_")
    assert verify_key(database.session(), created.secret).id == stored.id


def test_wrong_revoked_or_expired_keys_do_not_verify(database: Database) -> None:
    session = database.session()
    good = create_key(session, "good", ["admin"])
    revoked = create_key(session, "revoked", ["admin"])
    expired = create_key(session, "old", ["admin"], expires_at=utcnow() - dt.timedelta(seconds=1))
    revoked.record.revoked_at = utcnow()
    session.commit()
    tampered = good.secret[:-4] + ("AAAA" if not good.secret.endswith("AAAA") else "BBBB")
    assert verify_key(session, good.secret) is not None
    for token in (tampered, revoked.secret, expired.secret, "ifk_nope", "", "Bearer x"):
        assert verify_key(session, token) is None
