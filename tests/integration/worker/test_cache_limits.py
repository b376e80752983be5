"""A real worker's session cache: LRU by count, the byte budget, idle unload and its memory.

Each effect is read twice: in /v1/workers (the sessions the worker reports) and in the
worker's own Prometheus metrics (evictions and the loaded bytes of each version).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from inference_farm.cli.embedded_redis import free_port
from tests import onnx_models
from tests.integration.conftest import start_worker
from tests.integration.helpers import LiveClient, model_bytes, settled, upload
from tests.services import kill_group, wait_for

MIB = 2**20
WIDTH = 2560  # big_mlp(WIDTH, 1): one [2560, 2560] FP32 weight, 25 MiB a model
BIG = [f"big{index}" for index in range(5)]
TINY = ["tiny0", "tiny1"]
MAX_BYTES = 64 * MIB  # two big models fit, a third does not
IDLE_S = 6  # longer than any step below takes, short enough to wait for once
SETTINGS = {
    "CACHE_MAX_MODELS": "3",
    "CACHE_MAX_BYTES": str(MAX_BYTES),
    "CACHE_IDLE_SECONDS": str(IDLE_S),
}


@pytest.fixture
def cache_worker(
    farm_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen, str]]:
    """A worker with small cache limits and a metrics port; it and its metrics URL."""
    port = free_port()
    env = {**farm_env, "INFERENCE_FARM_WORKER_METRICS_PORT": str(port)}
    env.update({f"INFERENCE_FARM_{name}": value for name, value in SETTINGS.items()})
    process = start_worker(env, tmp_path / "worker.log")
    url = f"http://127.0.0.1:{port}/metrics"
    # Up before the uploads, so that the worker hears each new model's announcement.
    assert wait_for(lambda: _answers(url), timeout=60), process.log_path.read_text()
    yield process, url
    kill_group(process)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _metrics(url: str) -> dict[tuple[str, str], float]:
    """The worker's cache evictions and loaded bytes, by (sample name, model)."""
    text = httpx.get(url, timeout=10).text
    wanted = ("inference_farm_cache_evictions_total", "inference_farm_model_loaded_bytes")
    return {
        (sample.name, sample.labels["model"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in wanted
    }


def _sessions(api: FlaskClient) -> list[dict]:
    """The sessions the one worker reports, most recently used first."""
    [worker] = api.get("/v1/workers").get_json()["workers"]
    return worker["sessions"]


def _infer(live: LiveClient, name: str) -> None:
    width = WIDTH if name in BIG else 4
    tensor = {"name": "x", "datatype": "FP32", "shape": [1, width], "data": [1.0] * width}
    response = live.post(f"/v2/models/{name}/infer", json={"inputs": [tensor]})
    assert response.status_code == 200, response.data


def _check(api: FlaskClient, url: str, loaded: list[str], evicted: list[str]) -> None:
    """loaded are the sessions, most recent first, in /v1/workers and with bytes in the
    metrics; each of evicted was evicted once and holds 0 bytes."""
    sessions = _sessions(api)
    assert [session["name"] for session in sessions] == loaded
    assert sum(session["bytes"] for session in sessions) <= MAX_BYTES
    samples = _metrics(url)
    for session in sessions:
        assert samples["inference_farm_model_loaded_bytes", session["name"]] == session["bytes"]
    for name in evicted:
        assert samples["inference_farm_cache_evictions_total", name] == 1, name
        assert samples["inference_farm_model_loaded_bytes", name] == 0, name


def test_cache_evicts_lru_within_count_and_bytes_and_idle_unload_returns_memory(
    api: FlaskClient, live: LiveClient, cache_worker: tuple[subprocess.Popen, str]
) -> None:
    worker, url = cache_worker
    models = [onnx_models.big_mlp(WIDTH, 1, seed=index) for index in range(len(BIG))]
    models += [onnx_models.tiny_mlp(seed=index) for index in range(len(TINY))]
    for name, model in zip(BIG + TINY, models, strict=True):
        assert upload(api, name, model_bytes(model)).status_code == 202
    for name in BIG + TINY:
        assert settled(api, name, "1.0.0")["status"] == "ready"
    process = psutil.Process(worker.pid)  # threads pool: sessions load in this process
    baseline = process.memory_info().rss

    # Bytes: two big models fit; a third is over MAX_BYTES with only two of three slots
    # taken, so the least recently used one goes (big1: big0 was used after it).
    for name in ("big0", "big1", "big0", "big2"):
        _infer(live, name)
    _check(api, url, loaded=["big2", "big0"], evicted=["big1"])

    # Count: a third (tiny) session fits both limits; a fourth is one too many, and the least
    # recently used goes (big2), not the first loaded (big0).
    for name in ("tiny0", "big0", "tiny1"):
        _infer(live, name)
    _check(api, url, loaded=["tiny1", "big0", "tiny0"], evicted=["big1", "big2"])

    for name in ("big3", "big4"):  # evicting tiny0 and big0 for the count
        _infer(live, name)
    loaded = process.memory_info().rss

    # Idle: every session unloads, each was evicted exactly once and holds nothing.
    assert wait_for(lambda: not _sessions(api), timeout=IDLE_S * 5), _sessions(api)
    _check(api, url, loaded=[], evicted=BIG + TINY)
    [listed] = api.get("/v1/workers").get_json()["workers"]
    assert listed["cache"] == {"hits": 2, "misses": 7, "loads": 7, "evictions": 7}

    def settled_rss() -> bool:
        return process.memory_info().rss <= 1.10 * baseline

    held = wait_for(settled_rss, timeout=30)
    print(f"worker RSS: baseline {baseline / MIB:.1f} MiB, loaded {loaded / MIB:.1f} MiB, "
          f"after idle unload {process.memory_info().rss / MIB:.1f} MiB")  # fmt: skip
    assert held, f"RSS {process.memory_info().rss / MIB:.1f} MiB > 1.10 * {baseline / MIB:.1f}"
