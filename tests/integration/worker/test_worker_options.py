"""`inference-farm worker --models a,b` and `--pool FILE` as real processes: each serves the
queues it names, and only those; the pool file's settings are the worker's."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from inference_farm.broker import control
from inference_farm.broker.app import create_celery
from inference_farm.settings import Settings
from tests import onnx_models
from tests.integration.conftest import start_worker
from tests.integration.helpers import (
    batch_sizes,
    expected,
    model_bytes,
    post_version,
    settled_http,
)
from tests.services import kill_group, wait_for

POOL = "models: [c]\ndevice: cpu\nconcurrency: 2\nintra_op_threads: 1\n"
X = np.arange(4, dtype=np.float32).reshape(1, 4)


@pytest.fixture
def two_workers(farm_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, object]]:
    """A `--models a,b` worker and a `--pool` worker of model c, by role."""
    pool = tmp_path / "pool.yaml"
    pool.write_text(POOL)
    named = start_worker(farm_env, tmp_path / "named.log", "--models", "a,b")
    pooled = start_worker(farm_env, tmp_path / "pooled.log", "--pool", str(pool))
    yield {"named": named, "pooled": pooled}
    kill_group(named)
    kill_group(pooled)


def _queues_by_pid(client: httpx.Client) -> dict[int, set[str]]:
    workers = client.get("/v1/workers").json()["workers"]
    return {one["pid"]: {queue["name"] for queue in one["queues"]} for one in workers}


def _infer(client: httpx.Client, model: str) -> httpx.Response:
    tensor = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": X.ravel().tolist()}
    return client.post(f"/v2/models/{model}/infer", json={"inputs": [tensor]})


def test_named_and_pool_workers_serve_their_models_only(
    api_url: str, admin_key: str, two_workers: dict, farm_settings: Settings
) -> None:
    named, pooled = two_workers["named"], two_workers["pooled"]
    models = {name: model_bytes(onnx_models.tiny_mlp(seed=i)) for i, name in enumerate("abcd")}
    for name, content in models.items():  # validated by either: both consume farm.control
        assert post_version(api_url, admin_key, name, content).status_code == 202
    for name in models:
        assert settled_http(api_url, admin_key, name, "1.0.0")["status"] == "ready"
    headers = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as client:
        want = {
            named.pid: {"farm.control", "farm.model.a", "farm.model.b"},
            pooled.pid: {"farm.control", "farm.model.c"},
        }
        assert wait_for(lambda: _queues_by_pid(client) == want, timeout=30), _queues_by_pid(client)
        for name in "abc":
            answer = _infer(client, name)
            assert answer.status_code == 200, (name, answer.text)
            got = np.array(answer.json()["outputs"][0]["data"], np.float32).reshape(1, 2)
            np.testing.assert_allclose(got, expected(models[name], {"x": X})[0], rtol=1e-5)
        unserved = _infer(client, "d")
        assert unserved.status_code == 503, unserved.text
        assert "no live worker serves model 'd'" in unserved.json()["error"]
        assert unserved.headers["retry-after"] == "5"
        refused = client.post("/v2/repository/models/d/load")  # both answer: not mine
        assert refused.status_code == 503, refused.text
        assert "no live worker serves model 'd'" in refused.json()["error"]
        assert refused.headers["retry-after"] == "5"
        assert client.post("/v2/repository/models/c/load").status_code == 200
    # Each answer came from the worker that names the model: their own job lines say so.
    assert [bool(batch_sizes(named, m)) for m in "abc"] == [True, True, False]
    assert [bool(batch_sizes(pooled, m)) for m in "abc"] == [False, False, True]
    stats = control.inspect(create_celery(farm_settings), "stats", 5.0, 2)
    concurrency = {int(h.split("@")[0].split("-")[1]): s["pool"] for h, s in stats.items()}
    assert concurrency[pooled.pid]["max-concurrency"] == 2  # the pool file's, over the env's 1
    assert concurrency[named.pid]["max-concurrency"] == 1
