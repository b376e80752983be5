"""Short-lived per-process caches of the registry reads every request makes: keys and versions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy.orm import Session

from inference_farm.registry.catalog import resolve
from inference_farm.registry.db import utcnow
from inference_farm.registry.keys import hash_secret, verify_key
from inference_farm.registry.models import ApiKey

V = TypeVar("V")
MAX_ENTRIES = 10_000


class TtlCache(Generic[V]):
    """A thread-safe map whose entries expire ttl seconds after they were stored."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self._clock = ttl, clock
        self._entries: dict[Hashable, tuple[float, V]] = {}
        self._refreshing: set[Hashable] = set()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> V | None:
        """The live value stored under key, or None."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock():
            return None
        return entry[1]

    def claim_refresh(self, key: Hashable) -> bool:
        """True, once, when key's live entry is past half its life: the caller should read
        it afresh (off the request's path) and put() it, or discard() it."""
        entry = self._entries.get(key)
        left = entry[0] - self._clock() if entry is not None else 0.0
        if left <= 0 or left > self.ttl / 2:  # gone or expired (read it), or still fresh
            return False
        with self._lock:
            if key in self._refreshing:
                return False
            self._refreshing.add(key)
            return True

    def put(self, key: Hashable, value: V) -> None:
        """Store value under key for ttl seconds (nothing, when ttl is 0)."""
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = (self._clock() + self.ttl, value)
            self._refreshing.discard(key)

    def discard(self, key: Hashable) -> None:
        """Forget key's entry."""
        with self._lock:
            self._entries.pop(key, None)
            self._refreshing.discard(key)

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
            self._refreshing.clear()


@dataclass(frozen=True)
class Served:
    """What serving a model version needs to know, read once from the registry."""

    name: str
    version: str
    status: str
    error: str | None
    sha256: str | None
    signature: dict[str, Any]
    batchable: bool
    max_batch_size: int | None
    max_queue_delay_ms: float | None
    artifact_format: str = "onnx"
    archive_entry: str | None = None
    warmup_sha256: str | None = None


def read_served(session: Session, name: str, version: str | None) -> Served:
    """The version served for (name, version), as a detached snapshot."""
    record = resolve(session, name, version)
    model = record.model
    return Served(
        name=name,
        version=record.version,
        status=record.status,
        error=record.error,
        sha256=record.sha256,
        signature=record.signature or {},
        batchable=bool(record.batchable),
        max_batch_size=model.max_batch_size,
        max_queue_delay_ms=model.max_queue_delay_ms,
        artifact_format=record.artifact_format or "onnx",
        archive_entry=record.archive_entry,
        warmup_sha256=record.warmup_sha256,
    )


class RegistryCache:
    """Keys and served versions, each trusted for ttl seconds; only ready versions are kept."""

    def __init__(self, ttl: float) -> None:
        self.keys: TtlCache[ApiKey] = TtlCache(ttl)
        self.versions: TtlCache[Served] = TtlCache(ttl)

    def served(self, session: Session, name: str, version: str | None) -> Served:
        """The version served for (name, version): cached, or read from the registry."""
        found = self.cached_served(name, version)
        if found is not None:
            return found
        found = read_served(session, name, version)
        if found.status == "ready":
            self.versions.put((name, version), found)
        return found

    def cached_key(self, token: str) -> ApiKey | None:
        """The live key for token if this cache holds it; None means: ask the registry."""
        found = self.keys.get(hash_secret(token))  # the cache holds no secret
        if found is not None and (found.expires_at is None or found.expires_at > utcnow()):
            return found
        return None

    def key(self, session: Session, token: str) -> ApiKey | None:
        """The live key for token: cached, or verified against the registry."""
        found = self.cached_key(token)
        if found is not None:
            return found
        found = verify_key(session, token)
        if found is not None:
            session.expunge(found)  # readable after the session ends; never written through
            self.keys.put(hash_secret(token), found)
        return found

    def key_refresh_due(self, token: str) -> bool:
        """True, once, when token's cached key should be verified afresh (see claim_refresh)."""
        return self.keys.claim_refresh(hash_secret(token))

    def cached_served(self, name: str, version: str | None) -> Served | None:
        """The ready version served for (name, version) if this cache holds it."""
        return self.versions.get((name, version))

    def refresh_served(self, session: Session, name: str, version: str | None) -> None:
        """Read (name, version) afresh into the cache; forget it if it is no longer ready."""
        try:
            found = read_served(session, name, version)
        except Exception:
            self.versions.discard((name, version))  # gone, or unreadable: the next read says
            raise
        if found.status == "ready":
            self.versions.put((name, version), found)
        else:
            self.versions.discard((name, version))

    def refresh_key(self, session: Session, token: str) -> None:
        """Verify token afresh into the cache; forget it if the key is no longer live."""
        digest = hash_secret(token)
        try:
            found = verify_key(session, token)
        except Exception:
            self.keys.discard(digest)
            raise
        if found is None:
            self.keys.discard(digest)
            return
        session.expunge(found)
        self.keys.put(digest, found)

    def clear(self) -> None:
        """Forget everything: the registry was just changed by this process."""
        self.keys.clear()
        self.versions.clear()
