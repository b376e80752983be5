"""Flower against the farm's broker: its REST API lists the workers and the inference tasks."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from flask.testing import FlaskClient

from inference_farm.cli.embedded_redis import free_port
from tests import onnx_models
from tests.conftest import CLOSED_REDIS
from tests.integration.helpers import LiveClient, model_bytes, settled, upload
from tests.services import kill_group, wait_for

AUTH = ("ops", "flower-pw")
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [7, 8, 9, 10]}]}


@pytest.fixture
def flower_url(farm_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """URL of a real `inference-farm flower`, behind basic auth, on the test broker."""
    port = free_port()
    env = {**farm_env, "INFERENCE_FARM_FLOWER_PORT": str(port)}
    env["INFERENCE_FARM_FLOWER_BASIC_AUTH"] = ":".join(AUTH)
    with open(tmp_path / "flower.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "inference_farm", "flower"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _get(url, "/healthcheck") is not None, timeout=60), (
            tmp_path / "flower.log"
        ).read_text()
        yield url
    finally:
        kill_group(process)


def _get(url: str, path: str) -> httpx.Response | None:
    try:
        return httpx.get(url + path, auth=AUTH, timeout=10)
    except httpx.HTTPError:
        return None


def _api(url: str, path: str) -> dict:
    """A Flower REST API answer; empty while Flower cannot give one."""
    response = _get(url, path)
    return response.json() if response is not None and response.status_code == 200 else {}


def _farm_worker(url: str) -> dict | None:
    """The farm worker Flower lists, once it knows its queues."""
    for hostname, info in _api(url, "/api/workers?refresh=1").items():
        queues = {queue["name"] for queue in (info or {}).get("active_queues") or []}
        if hostname.startswith("farm-") and "farm.control" in queues:
            return {"hostname": hostname, "queues": queues}
    return None


def _infer_task(url: str) -> dict | None:
    # A synchronous request travels as a coalesced job, even when it is alone.
    tasks = _api(url, "/api/tasks?taskname=farm.infer_batch").values()
    done = [task for task in tasks if task.get("state") == "SUCCESS"]
    return done[0] if done else None


def test_flower_lists_the_workers_and_an_inference_that_just_ran(
    api: FlaskClient, live: LiveClient, worker: subprocess.Popen, flower_url: str
) -> None:
    # Up before the upload, so that the worker hears the new model's announcement.
    assert wait_for(lambda: _farm_worker(flower_url) is not None, timeout=60, interval=1.0)
    assert upload(api, "tiny", model_bytes(onnx_models.tiny_mlp())).status_code == 202
    assert settled(api, "tiny", "1.0.0")["status"] == "ready"

    def serving() -> bool:
        listed = _farm_worker(flower_url)
        return listed is not None and "farm.model.tiny" in listed["queues"]

    assert wait_for(serving, timeout=30, interval=1.0)
    listed = _farm_worker(flower_url)
    assert listed is not None

    def seen() -> bool:
        # Flower turns task events on every 5 s, so an inference made before its first
        # call reaches the worker goes unseen; make one per look until one shows.
        assert live.post("/v2/models/tiny/infer", json=BODY).status_code == 200
        return _infer_task(flower_url) is not None

    assert wait_for(seen, timeout=60, interval=1.0)
    task = _infer_task(flower_url)
    assert task is not None
    assert task["name"] == "farm.infer_batch"
    assert task["worker"] == listed["hostname"]
    # The argument summary names the model, version, requests and shapes; no tensor data.
    assert task["args"] == "('tiny', '1.0.0', 1 x 'x:FP32[1, 4]')"


def test_flower_says_when_it_cannot_reach_the_broker(farm_env: dict[str, str]) -> None:
    env = {**farm_env, "INFERENCE_FARM_BROKER_URL": CLOSED_REDIS}
    done = subprocess.run([sys.executable, "-m", "inference_farm", "flower"],
                          env=env, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 4
    assert "Flower needs the broker" in done.stderr
    assert "cannot reach redis://127.0.0.1:1/0" in done.stderr
