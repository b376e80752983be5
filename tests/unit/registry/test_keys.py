"""API keys: token parsing, masking, hashing, scopes, and create/verify on SQLite."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session

from inference_farm.errors import InvalidInput
from inference_farm.registry import ApiKey, Database
from inference_farm.registry.db import utcnow
from inference_farm.registry.keys import (
    SCOPES,
    check_scopes,
    create_key,
    hash_secret,
    mask,
    split_token,
    verify_key,
)
from inference_farm.registry.migrate import upgrade


@pytest.mark.parametrize(
    ("token", "prefix"),
    [
        ("ifk_abcd1234_secret", "abcd1234"),
        ("ifk_00000000_a_b_c", "00000000"),
        ("ifk_zzzzzzzz_-x-y-", "zzzzzzzz"),
        ("ifk_a1b2c3d4__leading_underscore", "a1b2c3d4"),
        ("ifk_a1b2c3d4_-", "a1b2c3d4"),
    ],
)
def test_split_token_good(token: str, prefix: str) -> None:
    assert split_token(token) == prefix


@pytest.mark.parametrize(
    "token",
    [
        "",
        "ifk",
        "ifk_",
        "ifk_abcd1234",
        "ifk_abcd1234_",
        "xyz_abcd1234_secret",
        "IFK_abcd1234_secret",
        "ifk_abc_secret",
        "ifk_abcd12345_secret",
        "ifk_ABCD1234_secret",
        "ifk_abcd-123_secret",
        "ifkabcd1234secret",
        "_ifk_abcd1234_secret",
    ],
)
def test_split_token_malformed(token: str) -> None:
    assert split_token(token) is None


def test_mask_hides_secret() -> None:
    token = "ifk_abcd1234_topsecret_value"
    masked = mask(token)
    assert masked.startswith("ifk_abcd1234_")
    assert "topsecret" not in masked
    assert "value" not in masked


def test_mask_of_malformed_token_hides_it() -> None:
    masked = mask("not-a-key-but-secret")
    assert "secret" not in masked
    assert masked == "<malformed key>"


def test_hash_secret() -> None:
    digest = hash_secret("ifk_abcd1234_x")
    assert digest == hash_secret("ifk_abcd1234_x")
    assert digest != hash_secret("ifk_abcd1234_y")
    assert len(digest) == 64
    assert set(digest) <= set("0123456789abcdef")


def test_check_scopes_dedups_and_sorts() -> None:
    assert check_scopes(["jobs", "infer", "jobs"]) == ["infer", "jobs"]
    assert check_scopes(list(SCOPES)) == sorted(SCOPES)


def test_check_scopes_names_unknown() -> None:
    with pytest.raises(InvalidInput, match="'bogus'"):
        check_scopes(["infer", "bogus"])


def test_check_scopes_rejects_empty() -> None:
    with pytest.raises(InvalidInput, match="at least one scope"):
        check_scopes([])


@pytest.fixture
def session(tmp_path: Path) -> Iterator[Session]:
    database = Database(f"sqlite:///{tmp_path / 'registry.db'}")
    upgrade(database)
    yield database.session()
    database.remove()
    database.engine.dispose()


def test_created_keys_have_distinct_prefixes(session: Session) -> None:
    created = [create_key(session, f"k{i}", ["infer"]) for i in range(200)]
    prefixes = {key.record.prefix for key in created}
    assert len(prefixes) == 200
    for key in created:
        assert split_token(key.secret) == key.record.prefix
        assert key.record.secret_hash == hash_secret(key.secret)
        assert key.secret not in repr(key.record.__dict__)


def test_verify_key_with_underscore_in_secret(session: Session) -> None:
    for attempt in range(100):
        created = create_key(session, f"k{attempt}", ["infer", "jobs"])
        if "_" in created.secret.split("_", 2)[2]:
            break
    else:
        pytest.fail("no secret with '_' in 100 keys")
    record = verify_key(session, created.secret)
    assert record is not None
    assert record.id == created.record.id
    assert record.scopes == ["infer", "jobs"]


def test_verify_key_rejects_wrong_secret_and_unknown_prefix(session: Session) -> None:
    created = create_key(session, "a", ["admin"])
    assert verify_key(session, created.secret) is not None
    assert verify_key(session, created.secret + "x") is None
    assert verify_key(session, "ifk_00000000_" + created.secret.split("_", 2)[2]) is None
    assert verify_key(session, "garbage") is None


def test_verify_key_rejects_revoked_and_expired(session: Session) -> None:
    revoked = create_key(session, "r", ["infer"])
    revoked.record.revoked_at = utcnow()
    expired = create_key(session, "e", ["infer"], expires_at=utcnow() - dt.timedelta(seconds=1))
    live = create_key(session, "l", ["infer"], expires_at=utcnow() + dt.timedelta(days=1))
    session.commit()
    assert verify_key(session, revoked.secret) is None
    assert verify_key(session, expired.secret) is None
    assert verify_key(session, live.secret) is not None


def test_create_key_with_bad_scope_stores_nothing(session: Session) -> None:
    with pytest.raises(InvalidInput):
        create_key(session, "bad", ["bogus"])
    session.rollback()
    assert session.query(ApiKey).count() == 0
