"""What one worker process holds: settings, registry, artifact store and session cache."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from inference_farm.errors import Conflict
from inference_farm.health import redis_client
from inference_farm.registry import Database
from inference_farm.registry.catalog import resolve
from inference_farm.settings import Settings
from inference_farm.storage import ArtifactStore

log = logging.getLogger(__name__)


def _sweep_forever(cache: Any, interval: float) -> None:
    """Unload idle sessions every interval seconds, for the life of the worker."""
    while True:
        time.sleep(interval)
        try:
            for name, version in cache.sweep_idle():
                log.info("unloaded idle session %s %s", name, version)
        except Exception:  # the sweeper must outlive any one failure
            log.exception("idle sweep failed")


@dataclass
class WorkerState:
    """The worker's long-lived parts; sessions are loaded lazily, on first use."""

    settings: Settings
    db: Database
    store: ArtifactStore
    redis: Any = None
    _cache: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, settings: Settings) -> WorkerState:
        """Open the registry, the store and Redis described by settings."""
        store = ArtifactStore(settings.effective_storage_url, settings.data_dir / "cache")
        database = Database(settings.effective_database_url)
        broker = redis_client(settings.broker_url or "", settings.health_timeout)
        return cls(settings=settings, db=database, store=store, redis=broker)

    @property
    def cache(self) -> Any:
        """The session cache, created on first use so onnxruntime loads only in workers."""
        with self._lock:
            if self._cache is None:
                self._cache = self._make_cache()
            return self._cache

    def _make_cache(self) -> Any:
        from inference_farm.runtime.cache import SessionCache
        from inference_farm.runtime.sessions import make_session

        s = self.settings

        def loader(path: Any) -> Any:
            return make_session(path, s.worker_device, s.intra_op_threads)

        cache = SessionCache(loader, s.cache_max_models, s.cache_max_bytes, s.cache_idle_seconds)
        interval = min(max(s.cache_idle_seconds / 4, 1.0), 30.0)
        threading.Thread(
            target=_sweep_forever, args=(cache, interval), name="cache-sweeper", daemon=True
        ).start()
        return cache

    def session_for(self, name: str, version: str | None) -> tuple[str, Any]:
        """The version served for (name, version) and its loaded session."""
        version, session, _signature = self.serving(name, version)
        return version, session

    def serving(self, name: str, version: str | None) -> tuple[str, Any, dict]:
        """The version served for (name, version), its loaded session and its signature."""
        session = self.db.session()
        try:
            record = resolve(session, name, version)
            if record.status != "ready":
                raise Conflict(f"version {record.version} of model {name!r} is {record.status}")
            key, digest, signature = (name, record.version), record.sha256, record.signature
        finally:
            self.db.remove()
        return key[1], self.cache.get(key, self.store.local_path(digest)), signature or {}

    def evict(self, name: str, version: str | None) -> int:
        """Unload one version, or every version of name; the number unloaded."""
        if self._cache is None:
            return 0
        if version is None:
            return self._cache.evict_model(name)
        return int(self._cache.evict((name, version)))

    def cache_report(self) -> dict[str, Any]:
        """Loaded sessions and cache counters; empty before the first session."""
        device = self.settings.worker_device
        if self._cache is None:
            return {"entries": [], "stats": {}, "device": device}
        stats = self._cache.stats
        counters = stats if isinstance(stats, dict) else vars(stats)
        return {"entries": self._cache.entries(), "stats": dict(counters), "device": device}
