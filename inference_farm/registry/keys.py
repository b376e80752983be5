"""API keys: random tokens with a visible prefix, stored only as a SHA-256 hash."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import string
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from inference_farm.errors import InvalidInput, NotFound
from inference_farm.registry.db import utcnow
from inference_farm.registry.models import ApiKey

SCOPES = ("infer", "jobs", "models:read", "models:write", "keys:admin", "metrics", "admin")
TOKEN_MARK = "ifk"  # noqa: S105 (a marker, not a secret)
PREFIX_CHARS = string.ascii_lowercase + string.digits
PREFIX_LENGTH = 8


@dataclass(frozen=True)
class CreatedKey:
    """A key just created: the record, and the secret that is shown only now."""

    record: ApiKey
    secret: str


def hash_secret(token: str) -> str:
    """The stored form of a token; tokens carry 256 bits, so a plain SHA-256 suffices."""
    return hashlib.sha256(token.encode()).hexdigest()


def split_token(token: str) -> str | None:
    """The visible prefix of a well-formed token, else None."""
    # The secret part is urlsafe base64 and may itself contain "_".
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != TOKEN_MARK or not parts[2]:
        return None
    prefix = parts[1]
    if len(prefix) != PREFIX_LENGTH or not set(prefix) <= set(PREFIX_CHARS):
        return None
    return prefix


def mask(token: str) -> str:
    """A token reduced to its prefix, safe for logs."""
    prefix = split_token(token)
    return f"{TOKEN_MARK}_{prefix}_…" if prefix else "<malformed key>"


def check_scopes(scopes: list[str]) -> list[str]:
    """The scopes, de-duplicated; InvalidInput names any unknown one."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise InvalidInput(f"unknown scope {unknown[0]!r}: expected one of {', '.join(SCOPES)}")
    if not scopes:
        raise InvalidInput(f"a key needs at least one scope: one of {', '.join(SCOPES)}")
    return sorted(set(scopes))


def create_key(
    session: Session,
    name: str,
    scopes: list[str],
    models: list[str] | None = None,
    expires_at: dt.datetime | None = None,
    **limits: float | int | None,
) -> CreatedKey:
    """Create and commit a key (limits: rate_per_second, burst, max_queued_jobs); the secret
    is returned once and never stored."""
    prefix = "".join(secrets.choice(PREFIX_CHARS) for _ in range(PREFIX_LENGTH))
    token = f"{TOKEN_MARK}_{prefix}_{secrets.token_urlsafe(32)}"
    record = ApiKey(
        name=name,
        prefix=prefix,
        secret_hash=hash_secret(token),
        scopes=check_scopes(scopes),
        models=models,
        expires_at=expires_at,
        **limits,
    )
    session.add(record)
    session.commit()
    return CreatedKey(record=record, secret=token)


def verify_key(session: Session, token: str) -> ApiKey | None:
    """The live key that token belongs to, or None if unknown, revoked or expired."""
    prefix = split_token(token)
    if prefix is None:
        return None
    record = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).one_or_none()
    expected = record.secret_hash if record else hash_secret("")
    if not hmac.compare_digest(expected, hash_secret(token)) or record is None:
        return None
    now = utcnow()
    if record.revoked_at is not None or (record.expires_at and record.expires_at <= now):
        return None
    return record


def record_use(session: Session, key: ApiKey, when: dt.datetime) -> None:
    """Record that key was used at when (the caller decides how often that is worth it)."""
    key.last_used_at = when  # the cached copy too, so the next request does not write again
    session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=when))
    session.commit()


def revoke_key(session: Session, key_id: int) -> ApiKey:
    """Revoke a key (it stops working at once; revoking twice keeps the first time);
    NotFound if there is no such key."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"key {key_id} not found")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.commit()
    return key
