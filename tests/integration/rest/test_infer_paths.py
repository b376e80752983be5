"""Sync infer paths end to end through the real API and a real worker: a full queue's 429,
and each request as its own job when coalescing is off."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from inference_farm.broker.queues import FULL_CHECK_S
from tests import onnx_models
from tests.integration.conftest import running_api
from tests.integration.helpers import expected, model_bytes, post_version, settled_http
from tests.services import wait_for

WIDTH, LAYERS = 1024, 64  # steady_model: a run of about a second, far longer than a request


@contextlib.contextmanager
def api_client(
    farm_env: dict[str, str], tmp_path: Path, key: str, **settings: str
) -> Iterator[httpx.Client]:
    """A real API with settings (INFERENCE_FARM_<NAME>) over farm_env, as a client sending key."""
    env = {**farm_env, **{f"INFERENCE_FARM_{name}": value for name, value in settings.items()}}
    with (
        running_api(env, tmp_path / "api.log") as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60
        ) as client,
    ):
        yield client


def ready(url: str, key: str, name: str, content: bytes) -> None:
    """Upload content as model name through the API at url, and wait until it is ready."""
    assert post_version(url, key, name, content).status_code == 202
    assert settled_http(url, key, name, "1.0.0")["status"] == "ready"


@pytest.fixture
def short_queue(farm_env: dict[str, str], tmp_path: Path, admin_key: str) -> Iterator[httpx.Client]:
    """A real API that lets two jobs wait on a model's queue, as a client with an admin key."""
    with api_client(farm_env, tmp_path, admin_key, MAX_QUEUE_LENGTH="2") as client:
        yield client


def test_a_full_queue_answers_sync_infer_429_until_it_drains(
    short_queue: httpx.Client, admin_key: str, worker: subprocess.Popen
) -> None:
    http = short_queue
    content = model_bytes(onnx_models.steady_model(WIDTH, LAYERS))
    ready(str(http.base_url), admin_key, "slow", content)
    x = {"name": "x", "datatype": "FP32", "shape": [1, WIDTH], "data": [1.0] * WIDTH}
    job = {"model": "slow", "inputs": [x]}
    busy, sent = http.post("/v1/jobs", json=job).json()["job_id"], time.monotonic()

    def taken() -> bool:  # by the worker, and the API's count of it as waiting has lapsed
        running = http.get(f"/v1/jobs/{busy}").json()["status"] == "running"
        return running and time.monotonic() - sent > FULL_CHECK_S

    assert wait_for(taken, 30)
    waiting = [http.post("/v1/jobs", json=job) for _ in range(2)]  # the one worker is busy
    assert [w.status_code for w in waiting] == [202, 202]
    full = http.post("/v2/models/slow/infer", json={"inputs": [x]})
    assert full.status_code == 429, full.text
    assert full.json() == {"error": "the queue of model 'slow' is full (2 jobs waiting)"}
    assert full.headers["retry-after"] == "1"
    for queued in waiting:  # cancelled, they are dropped as soon as the busy run ends
        assert http.delete(f"/v1/jobs/{queued.json()['job_id']}").status_code == 200
    # As a client retrying after Retry-After: once the worker drains the queue, it is served.
    answers: list[httpx.Response] = []

    def retried() -> bool:
        answers.append(http.post("/v2/models/slow/infer", json={"inputs": [x]}))
        return answers[-1].status_code != 429

    assert wait_for(retried, 60)
    assert answers[-1].status_code == 200, answers[-1].text
    assert answers[-1].json()["outputs"][0]["data"] == [WIDTH * WIDTH]


@pytest.fixture
def uncoalesced(farm_env: dict[str, str], tmp_path: Path, admin_key: str) -> Iterator[httpx.Client]:
    """A real API with coalescing off, as a client with an admin key."""
    with api_client(farm_env, tmp_path, admin_key, COALESCE_REQUESTS="false") as client:
        yield client


def test_without_coalescing_each_request_is_its_own_job(
    uncoalesced: httpx.Client, admin_key: str, worker: subprocess.Popen
) -> None:
    content = model_bytes(onnx_models.tiny_mlp())
    ready(str(uncoalesced.base_url), admin_key, "tiny", content)
    arrays = [np.full((1, 4), i, np.float32) for i in range(8)]

    def post(index: int) -> httpx.Response:
        data = arrays[index].ravel().tolist()
        tensor = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": data}
        headers = {"X-Request-ID": f"alone-{index}"}
        return uncoalesced.post("/v2/models/tiny/infer", json={"inputs": [tensor]}, headers=headers)

    with ThreadPoolExecutor(8) as pool:  # concurrent: coalescing would join them
        answers = list(pool.map(post, range(len(arrays))))
    for array, answer in zip(arrays, answers, strict=True):
        assert answer.status_code == 200, answer.text
        got = np.array(answer.json()["outputs"][0]["data"], np.float32).reshape(1, 2)
        np.testing.assert_allclose(got, expected(content, {"x": array})[0], rtol=1e-5, atol=1e-6)
    line = re.compile(r"job job_id=(\S+) model=tiny .*request_id=alone-(\d+)")
    jobs = {int(m[2]): m[1] for m in line.finditer(Path(worker.log_path).read_text())}
    assert sorted(jobs) == list(range(8)), jobs
    assert len(set(jobs.values())) == 8, f"requests shared jobs: {jobs}"
