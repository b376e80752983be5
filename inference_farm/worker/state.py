"""What one worker process holds: settings, registry, artifact store and session cache."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inference_farm.broker import events, heartbeat
from inference_farm.broker.connections import redis_client
from inference_farm.errors import Conflict
from inference_farm.registry import Database, changes
from inference_farm.registry.cached import RegistryCache, Served
from inference_farm.settings import Settings
from inference_farm.storage import ArtifactStore, archives

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


class _Announcing:
    """The worker's cache metrics, and a heartbeat at once when a session loads or unloads,
    so that watchers (the console) see the worker's sessions change without waiting a beat."""

    def __init__(self, metrics: Any) -> None:
        self.metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self.metrics, name)

    def observe_loaded(self, name: str, version: str, nbytes: int) -> None:
        """Record the memory a version holds now, and beat soon."""
        self.metrics.observe_loaded(name, version, nbytes)
        heartbeat.soon()


@dataclass
class WorkerState:
    """The worker's long-lived parts; sessions are loaded lazily, on first use."""

    settings: Settings
    db: Database
    store: ArtifactStore
    redis: Any = None
    registry: RegistryCache = field(default_factory=lambda: RegistryCache(0))
    _cache: Any = None
    _batchers: dict[tuple[str, str], Any] = field(default_factory=dict)
    _refresh_pool: ThreadPoolExecutor | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(cls, settings: Settings) -> WorkerState:
        """Open the registry, the store and Redis described by settings."""
        store = ArtifactStore(settings.effective_storage_url, settings.data_dir / "cache")
        database = Database(settings.effective_database_url)
        broker = redis_client(settings.broker_url or "", settings.health_timeout)
        changes.watch(database, events.publisher(broker))  # jobs and validations end here
        registry = RegistryCache(settings.registry_cache_seconds)
        return cls(settings=settings, db=database, store=store, redis=broker, registry=registry)

    @property
    def cache(self) -> Any:
        """The session cache, created on first use so onnxruntime loads only in workers."""
        with self._lock:
            if self._cache is None:
                self._cache = self._make_cache()
            return self._cache

    def _make_cache(self) -> Any:
        from inference_farm.runtime.cache import SessionCache
        from inference_farm.runtime.sessions import make_session, warm
        from inference_farm.worker import metrics as worker_metrics

        s = self.settings

        def loader(files: Any) -> Any:
            session = make_session(files.path, s.worker_device, s.intra_op_threads)
            warm(session, files.warmup, files.label)
            return session

        cache = SessionCache(
            loader, s.cache_max_models, s.cache_max_bytes, s.cache_idle_seconds,
            metrics=_Announcing(worker_metrics),
        )  # fmt: skip
        interval = min(max(s.cache_idle_seconds / 4, 1.0), 30.0)
        threading.Thread(
            target=_sweep_forever, args=(cache, interval), name="cache-sweeper", daemon=True
        ).start()
        return cache

    def session_for(self, name: str, version: str | None) -> tuple[str, Any]:
        """The version served for (name, version) and its loaded session."""
        found, session = self.serving(name, version)
        return found.version, session

    def served(self, name: str, version: str | None) -> Served:
        """The ready version served for (name, version); Conflict if it is not ready.

        A cached version past half its life is read afresh on a thread of its own, so a job
        seldom waits for the registry.
        """
        found = self.registry.cached_served(name, version)
        if found is not None:
            if self.registry.versions.claim_refresh((name, version)):
                self._refresher().submit(self._refresh, name, version)
            return found
        session = self.db.session()
        try:
            found = self.registry.served(session, name, version)
        finally:
            self.db.remove()
        if found.status != "ready":
            raise Conflict(f"version {found.version} of model {name!r} is {found.status}")
        return found

    def _refresher(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._refresh_pool is None:
                self._refresh_pool = ThreadPoolExecutor(1, "registry-refresh")
            return self._refresh_pool

    def _refresh(self, name: str, version: str | None) -> None:
        try:
            self.registry.refresh_served(self.db.session(), name, version)
        except Exception as exc:  # dropped from the cache: the next job reads it itself
            log.info("refreshing %s %s from the registry failed: %s", name, version, exc)
        finally:
            self.db.remove()

    def serving(self, name: str, version: str | None) -> tuple[Served, Any]:
        """The version served for (name, version) and its loaded session."""
        found = self.served(name, version)
        key = (name, found.version)
        return found, self.cache.get(key, lambda: self.model_files(found))

    def model_files(self, found: Served) -> Any:
        """The files a session of version found loads from, with its warmup samples."""
        from inference_farm.runtime.sessions import ModelFiles

        path, size = self.model_path(found)
        warmup = self._samples(found.warmup_sha256) if found.warmup_sha256 else None
        return ModelFiles(path, size, warmup, f"{found.name} {found.version}")

    def model_path(self, found: Any) -> tuple[Path, int]:
        """The local .onnx file of version found, unpacking its archive if need be, and the
        size of it with its external data."""
        root = self.archive_root(found)
        if root is None:
            path = self.store.local_path(found.sha256 or "")
            return path, path.stat().st_size
        size = sum(item.stat().st_size for item in root.rglob("*") if item.is_file())
        return root.joinpath(*(found.archive_entry or "").split("/")), size

    def archive_root(self, found: Any) -> Path | None:
        """The folder version found's archive unpacks into (checked as it is); None for a
        plain .onnx file."""
        kind = found.artifact_format or "onnx"
        if kind == "onnx":
            return None
        limits = archives.Limits.of(self.settings)
        return self.store.unpacked(found.sha256 or "", kind, limits)

    def samples_path(self, digest: str) -> Path:
        """The local file of stored warmup samples."""
        return self.store.local_path(digest, kind="warmup")

    def _samples(self, digest: str) -> dict[str, Any]:
        from inference_farm.protocol import samples
        from inference_farm.protocol.packing import for_onnxruntime

        stored = samples.decode(self.samples_path(digest).read_bytes())
        return {name: for_onnxruntime(array, name) for name, array in stored.items()}

    def batcher_for(self, found: Served) -> Any:
        """The batcher of a stackable version, or None when its requests run alone."""
        from inference_farm.runtime.batcher import Batcher

        rows = found.max_batch_size or self.settings.max_batch_size
        if not found.batchable or rows <= 1:
            return None
        delay_ms = found.max_queue_delay_ms
        delay_s = (self.settings.max_queue_delay_ms if delay_ms is None else delay_ms) / 1000
        key = (found.name, found.version)
        with self._lock:
            batcher = self._batchers.get(key)
            if batcher is None or (batcher.max_rows, batcher.max_delay_s) != (rows, delay_s):
                batcher = self._batchers[key] = Batcher(f"{key[0]}-{key[1]}", rows, delay_s)
            return batcher

    def evict(self, name: str, version: str | None) -> int:
        """Unload one version, or every version of name; the number unloaded."""
        self.registry.clear()  # the version was retired or deleted: read it afresh
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
