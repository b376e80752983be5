"""A worker's loaded sessions: lazy loading, LRU eviction by count and bytes, idle unloading."""

from __future__ import annotations

import logging
import pathlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from typing import Any

from inference_farm.runtime.memory import release_freed_memory, rss_bytes

log = logging.getLogger(__name__)

Key = tuple[str, str]
# What a session is loaded from: a model file, or a runtime.sessions.ModelFiles.
Source = Any
MIB = 2**20


@dataclass
class CacheStats:
    """Counters of a SessionCache.

    A get that waits for another thread's load of the same key counts as a hit; evictions
    count unloads for the limits or for idleness, not evict(), evict_model() or clear().
    """

    hits: int = 0
    misses: int = 0
    loads: int = 0
    evictions: int = 0


@dataclass
class _Entry:
    session: Any
    nbytes: int
    last_used: float


class CacheMetrics:
    """Where a cache reports its events; this one forgets them (the worker's records them)."""

    def cache_event(self, kind: str, model: str, version: str, count: int = 1) -> None:
        """A hit, miss or eviction of (model, version)."""

    def observe_load(self, model: str, version: str, seconds: float) -> None:
        """A load of (model, version) took seconds."""

    def observe_loaded(self, model: str, version: str, nbytes: int) -> None:
        """(model, version) now holds nbytes (0: unloaded)."""


class SessionCache:
    """Sessions by (model name, version), loaded on first use and unloaded when over budget."""

    def __init__(
        self,
        loader: Callable[[Source], Any],
        max_models: int,
        max_bytes: int,
        idle_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        metrics: Any = None,
    ) -> None:
        self._loader = loader
        self._metrics = metrics or CacheMetrics()  # anything with CacheMetrics' methods
        self.max_models = max_models
        self.max_bytes = max_bytes
        self.idle_seconds = idle_seconds
        self._clock = clock
        self._lock = threading.RLock()
        # One load at a time, so that the RSS growth around a load is that model's alone.
        self._load_lock = threading.Lock()
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._loading: dict[Key, Future] = {}
        self._stale: set[Future] = set()  # pending loads evicted before they finished
        self._stats = CacheStats()

    @property
    def stats(self) -> CacheStats:
        """A snapshot of the hit, miss, load and eviction counters."""
        with self._lock:
            return replace(self._stats)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get(self, key: Key, path: Source | Callable[[], Source]) -> Any:
        """The session for key, loading it from path on a miss (path may be a function that
        finds the file, called only then)."""
        with self._lock:
            entry = self._entries.get(key)
            pending = self._loading.get(key)
            if entry is not None or pending is not None:
                self._stats.hits += 1
                self._metrics.cache_event("hits", *key)
            if entry is not None:
                entry.last_used = self._clock()
                self._entries.move_to_end(key)
                return entry.session
            if pending is None:
                self._stats.misses += 1
                self._metrics.cache_event("misses", *key)
                pending = self._loading[key] = Future()
                owner = True
            else:
                owner = False
        if not owner:
            return pending.result()  # another thread is loading it: share its outcome
        return self._load_for(key, path, pending)

    def load(self, key: Key, path: Source) -> None:
        """Load the session for key now, unless it is loaded already (warming the cache)."""
        self.get(key, path)

    def _load_for(self, key: Key, path: Source | Callable[[], Source], pending: Future) -> Any:
        try:
            session, nbytes = self._measured_load(key, path() if callable(path) else path)
        except BaseException as exc:
            with self._lock:
                self._loading.pop(key, None)
                self._stale.discard(pending)
            pending.set_exception(exc)
            release_freed_memory()
            raise
        self._keep(key, pending, session, nbytes)
        pending.set_result(session)
        return session

    def _measured_load(self, key: Key, path: Source) -> tuple[Any, int]:
        """The loaded session and its size: the larger of file size and RSS growth."""
        size = getattr(path, "size_bytes", None)
        if size is None:
            size = pathlib.Path(path).stat().st_size
        with self._load_lock:
            self._unload(self._make_room(size))
            before, started = rss_bytes(), time.perf_counter()
            session = self._loader(path)
            # Count what the session holds, not the parser's garbage still in the heap.
            release_freed_memory()
            nbytes = max(size, rss_bytes() - before)
        elapsed_ms = (time.perf_counter() - started) * 1000
        self._metrics.observe_load(*key, elapsed_ms / 1000)
        log.info("loaded %s version %s in %.0f ms (%.1f MiB)", *key, elapsed_ms, nbytes / MIB)
        return session, nbytes

    def _keep(self, key: Key, pending: Future, session: Any, nbytes: int) -> None:
        """Cache a freshly loaded session, unless it was evicted while loading."""
        with self._lock:
            del self._loading[key]
            self._stats.loads += 1
            if pending in self._stale:
                self._stale.discard(pending)
                return
            self._entries[key] = _Entry(session, nbytes, self._clock())
            self._metrics.observe_loaded(*key, nbytes)
            victims = self._evict_over_limits(keep=key)
        self._unload(victims)

    def _make_room(self, incoming: int) -> list[_Entry]:
        """Evict LRU entries so that one more session of at least incoming bytes fits."""
        with self._lock:
            victims = []
            while self._entries and (
                len(self._entries) >= self.max_models
                or self._total_bytes() + incoming > self.max_bytes
            ):
                victims.append(self._pop_lru("making room"))
            return victims

    def _evict_over_limits(self, keep: Key) -> list[_Entry]:
        """Evict LRU entries until the cache is within both limits; keep is the newest."""
        victims = []
        while len(self._entries) > 1 and (
            len(self._entries) > self.max_models or self._total_bytes() > self.max_bytes
        ):
            victims.append(self._pop_lru("over the limits"))
        if self._total_bytes() > self.max_bytes:
            log.warning(
                "%s version %s alone is over cache_max_bytes (%.0f MiB > %.0f MiB)",
                *keep,
                self._total_bytes() / MIB,
                self.max_bytes / MIB,
            )
        return victims

    def _pop_lru(self, why: str) -> _Entry:
        key, entry = self._entries.popitem(last=False)
        self._stats.evictions += 1
        self._metrics.cache_event("evictions", *key)
        self._metrics.observe_loaded(*key, 0)
        log.info("evicting %s version %s (%s)", *key, why)
        return entry

    def _total_bytes(self) -> int:
        return sum(entry.nbytes for entry in self._entries.values())

    def _unload(self, victims: list[_Entry]) -> None:
        """Drop the victims' sessions and hand the freed memory back to the OS."""
        if victims:
            victims.clear()  # the last references: the sessions are destroyed here
            release_freed_memory()

    def _remove(self, keys: list[Key]) -> int:
        """Unload the given keys and forget pending loads of them; the number unloaded."""
        with self._lock:
            removed = [key for key in keys if key in self._entries]
            victims = [self._entries.pop(key) for key in removed]
            for key in removed:
                self._metrics.observe_loaded(*key, 0)
            for key in keys:
                if key in self._loading:
                    self._stale.add(self._loading[key])
        count = len(victims)
        self._unload(victims)
        return count

    def evict(self, key: Key) -> bool:
        """Unload key; whether it was loaded."""
        return self._remove([key]) == 1

    def evict_model(self, name: str) -> int:
        """Unload every version of the model name; the number unloaded."""
        with self._lock:
            keys = [key for key in [*self._entries, *self._loading] if key[0] == name]
        return self._remove(keys)

    def sweep_idle(self) -> list[Key]:
        """Unload the sessions unused for idle_seconds; their keys."""
        with self._lock:
            now = self._clock()
            keys = [
                key
                for key, entry in self._entries.items()
                if now - entry.last_used >= self.idle_seconds
            ]
            victims = [self._entries.pop(key) for key in keys]
            self._stats.evictions += len(victims)
        for key in keys:
            self._metrics.cache_event("evictions", *key)
            self._metrics.observe_loaded(*key, 0)
            log.info("unloading %s version %s (idle)", *key)
        self._unload(victims)
        return keys

    def clear(self) -> None:
        """Unload every session."""
        with self._lock:
            keys = [*self._entries, *self._loading]
        self._remove(keys)

    def entries(self) -> list[dict]:
        """The loaded sessions, most recently used first."""
        with self._lock:
            now = self._clock()
            return [
                {
                    "name": name,
                    "version": version,
                    "bytes": entry.nbytes,
                    "idle_seconds": now - entry.last_used,
                }
                for (name, version), entry in reversed(self._entries.items())
            ]
