"""SessionCache with a fake loader: lazy loads, LRU by count and bytes, idleness, threads."""

from __future__ import annotations

import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from inference_farm.runtime import cache as cache_module
from inference_farm.runtime.cache import SessionCache
from tests.services import wait_for


class Session:
    """Stands in for an InferenceSession; weak-referenceable, so tests can see it die."""

    def __init__(self, path: Path) -> None:
        self.path = path


class Loader:
    """Records its calls; can grow the fake RSS, wait on a gate, or fail."""

    def __init__(self, rss: list[int]) -> None:
        self.calls: list[Path] = []
        self.rss = rss
        self.grow = 0
        self.gate: threading.Event | None = None
        self.error: Exception | None = None

    def __call__(self, path: Path) -> Session:
        self.calls.append(path)
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.error is not None:
            raise self.error
        self.rss[0] += self.grow
        return Session(path)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def rss(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A fake RSS that only the Loader moves, so entry sizes are the file sizes."""
    value = [10**9]
    monkeypatch.setattr(cache_module, "rss_bytes", lambda: value[0])
    return value


@pytest.fixture
def loader(rss: list[int]) -> Loader:
    return Loader(rss)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Model files a, b, c, d of 100 bytes and big of 500 bytes."""
    sizes = {"a": 100, "b": 100, "c": 100, "d": 100, "big": 500}
    paths = {}
    for name, size in sizes.items():
        paths[name] = tmp_path / f"{name}.onnx"
        paths[name].write_bytes(b"x" * size)
    return paths


def make(loader: Loader, clock: Clock, models: int = 8, nbytes: int = 10**6) -> SessionCache:
    return SessionCache(loader, max_models=models, max_bytes=nbytes, idle_seconds=60, clock=clock)


def names(cache: SessionCache) -> list[str]:
    return [entry["name"] for entry in cache.entries()]


def test_loads_lazily(loader: Loader, clock: Clock, files: dict[str, Path]) -> None:
    cache = make(loader, clock)
    assert loader.calls == []
    first = cache.get(("a", "1"), files["a"])
    assert loader.calls == [files["a"]]
    assert cache.get(("a", "1"), files["a"]) is first
    assert loader.calls == [files["a"]]
    stats = cache.stats
    assert (stats.hits, stats.misses, stats.loads, stats.evictions) == (1, 1, 1, 0)


def test_versions_are_separate(loader: Loader, clock: Clock, files: dict[str, Path]) -> None:
    cache = make(loader, clock)
    assert cache.get(("a", "1"), files["a"]) is not cache.get(("a", "2"), files["b"])
    assert len(cache) == 2


def test_warm_load(loader: Loader, clock: Clock, files: dict[str, Path]) -> None:
    cache = make(loader, clock)
    cache.load(("a", "1"), files["a"])
    cache.load(("a", "1"), files["a"])
    assert len(loader.calls) == 1
    assert cache.get(("a", "1"), files["a"]).path == files["a"]


def test_lru_by_count(loader: Loader, clock: Clock, files: dict[str, Path]) -> None:
    cache = make(loader, clock, models=2)
    cache.get(("a", "1"), files["a"])
    cache.get(("b", "1"), files["b"])
    cache.get(("a", "1"), files["a"])
    cache.get(("c", "1"), files["c"])
    assert names(cache) == ["c", "a"]
    assert cache.stats.evictions == 1


def test_lru_by_bytes(loader: Loader, clock: Clock, files: dict[str, Path]) -> None:
    cache = make(loader, clock, nbytes=250)
    for name in ("a", "b", "c"):
        cache.get((name, "1"), files[name])
    assert names(cache) == ["c", "b"]
    assert [entry["bytes"] for entry in cache.entries()] == [100, 100]


def test_size_is_rss_growth_when_larger(
    loader: Loader, clock: Clock, files: dict[str, Path]
) -> None:
    cache = make(loader, clock, nbytes=2500)
    loader.grow = 1000
    cache.get(("a", "1"), files["a"])
    cache.get(("b", "1"), files["b"])
    assert [entry["bytes"] for entry in cache.entries()] == [1000, 1000]
    cache.get(("c", "1"), files["c"])
    assert names(cache) == ["c", "b"]


def test_requested_entry_is_never_evicted(
    loader: Loader, clock: Clock, files: dict[str, Path]
) -> None:
    cache = make(loader, clock, nbytes=300)
    cache.get(("a", "1"), files["a"])
    big = cache.get(("big", "1"), files["big"])
    assert names(cache) == ["big"]
    assert cache.get(("big", "1"), files["big"]) is big
    cache.get(("b", "1"), files["b"])
    assert names(cache) == ["b"]


def test_idle_sweep(loader: Loader, clock: Clock, files: dict[str, Path]) -> None:
    cache = make(loader, clock)
    cache.get(("a", "1"), files["a"])
    clock.now += 30
    cache.get(("b", "1"), files["b"])
    clock.now += 20
    assert cache.sweep_idle() == []
    cache.get(("b", "1"), files["b"])  # use refreshes b
    clock.now += 15
    assert [entry["idle_seconds"] for entry in cache.entries()] == [15, 65]
    assert cache.sweep_idle() == [("a", "1")]
    assert names(cache) == ["b"]
    assert cache.stats.evictions == 1


def test_evict(loader: Loader, clock: Clock, files: dict[str, Path]) -> None:
    cache = make(loader, clock)
    cache.get(("a", "1"), files["a"])
    assert cache.evict(("a", "1")) is True
    assert cache.evict(("a", "1")) is False
    assert len(cache) == 0
    cache.get(("a", "1"), files["a"])
    assert len(loader.calls) == 2


def test_evict_model(loader: Loader, clock: Clock, files: dict[str, Path]) -> None:
    cache = make(loader, clock)
    for key in [("m", "1"), ("m", "2"), ("other", "1")]:
        cache.get(key, files["a"])
    assert cache.evict_model("m") == 2
    assert cache.evict_model("m") == 0
    assert [(entry["name"], entry["version"]) for entry in cache.entries()] == [("other", "1")]


def test_clear(loader: Loader, clock: Clock, files: dict[str, Path]) -> None:
    cache = make(loader, clock)
    cache.get(("a", "1"), files["a"])
    cache.get(("b", "1"), files["b"])
    cache.clear()
    assert cache.entries() == []


def test_unload_drops_session_and_releases(
    loader: Loader, clock: Clock, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    released = []
    monkeypatch.setattr(cache_module, "release_freed_memory", lambda: released.append(1))
    cache = make(loader, clock)
    session = weakref.ref(cache.get(("a", "1"), files["a"]))
    released.clear()
    cache.evict(("a", "1"))
    assert session() is None
    assert released == [1]


def test_loader_failure_caches_nothing(
    loader: Loader, clock: Clock, files: dict[str, Path]
) -> None:
    cache = make(loader, clock)
    loader.error = ValueError("broken model")
    with pytest.raises(ValueError, match="broken model"):
        cache.get(("a", "1"), files["a"])
    assert len(cache) == 0
    loader.error = None
    cache.get(("a", "1"), files["a"])
    assert len(loader.calls) == 2
    assert cache.stats.loads == 1


def test_missing_file_caches_nothing(loader: Loader, clock: Clock, tmp_path: Path) -> None:
    cache = make(loader, clock)
    with pytest.raises(FileNotFoundError):
        cache.get(("a", "1"), tmp_path / "gone.onnx")
    assert len(cache) == 0
    assert loader.calls == []


def concurrent_gets(cache: SessionCache, path: Path, loader: Loader, threads: int) -> list:
    """Outcomes (session or exception) of threads gets of one key while the loader waits."""
    loader.gate = threading.Event()

    def get() -> object:
        try:
            return cache.get(("a", "1"), path)
        except Exception as exc:
            return exc

    with ThreadPoolExecutor(threads) as pool:
        futures = [pool.submit(get) for _ in range(threads)]
        deadline = time.monotonic() + 5
        while cache.stats.hits + cache.stats.misses < threads and time.monotonic() < deadline:
            time.sleep(0.01)
        loader.gate.set()
        return [future.result() for future in futures]


def test_concurrent_get_loads_once(loader: Loader, clock: Clock, files: dict[str, Path]) -> None:
    cache = make(loader, clock)
    results = concurrent_gets(cache, files["a"], loader, threads=8)
    assert len(loader.calls) == 1
    assert all(result is results[0] for result in results)
    assert isinstance(results[0], Session)
    stats = cache.stats
    assert (stats.misses, stats.hits, stats.loads) == (1, 7, 1)


def test_concurrent_failure_reaches_every_caller(
    loader: Loader, clock: Clock, files: dict[str, Path]
) -> None:
    cache = make(loader, clock)
    loader.error = ValueError("broken model")
    results = concurrent_gets(cache, files["a"], loader, threads=4)
    assert len(loader.calls) == 1
    assert all(isinstance(result, ValueError) for result in results)
    assert len(cache) == 0


def test_eviction_during_load_keeps_nothing(
    loader: Loader, clock: Clock, files: dict[str, Path]
) -> None:
    cache = make(loader, clock)
    loader.gate = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(cache.get, ("a", "1"), files["a"])
        assert wait_for(lambda: loader.calls, 10, 0.01), "the load never began"
        assert cache.evict_model("a") == 0
        loader.gate.set()
        assert isinstance(pending.result(), Session)  # the caller is still served
    assert len(cache) == 0


def test_hits_are_not_blocked_by_a_load(
    loader: Loader, clock: Clock, files: dict[str, Path]
) -> None:
    cache = make(loader, clock)
    ready = cache.get(("b", "1"), files["b"])
    loader.gate = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(cache.get, ("a", "1"), files["a"])
        assert wait_for(lambda: len(loader.calls) >= 2, 10, 0.01), "the load never began"
        assert cache.get(("b", "1"), files["b"]) is ready
        loader.gate.set()
        pending.result()
