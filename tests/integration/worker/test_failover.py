"""A worker killed mid-job: the job is redelivered and finishes; a job that keeps killing
its worker fails after the delivery cap instead of looping forever."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from inference_farm.broker import control, heartbeat
from inference_farm.settings import load_settings
from tests import onnx_models
from tests.integration.conftest import start_worker
from tests.integration.helpers import client_for, model_bytes, settled, upload
from tests.services import kill_group, stop_group, wait_for

WIDTH, LAYERS = 1024, 192  # about 3 s of work: long enough to kill a worker mid-job
JOB = {
    "model": "slow",
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, WIDTH], "data": [0.01] * WIDTH}],
}


@pytest.fixture
def failover_env(farm_env: dict[str, str]) -> dict[str, str]:
    """Short visibility timeout, so a dead worker's job comes back within seconds."""
    return {
        **farm_env,
        "INFERENCE_FARM_VISIBILITY_TIMEOUT": "4",
        "INFERENCE_FARM_MAX_DELIVERIES": "2",
    }


@pytest.fixture
def workers(failover_env: dict[str, str], tmp_path: Path) -> Iterator[list[subprocess.Popen]]:
    """Worker processes started by the test; all stopped afterwards."""
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        kill_group(process)


@pytest.fixture
def slow_api(failover_env: dict[str, str], workers: list, tmp_path: Path) -> FlaskClient:
    client = client_for(load_settings(env=failover_env))
    workers.append(start_worker(failover_env, tmp_path / "worker.log"))
    assert (
        upload(client, "slow", model_bytes(onnx_models.slow_model(WIDTH, LAYERS))).status_code
        == 202
    )
    assert settled(client, "slow", "1.0.0")["status"] == "ready"
    return client


def _job(api: FlaskClient, job_id: str) -> dict[str, Any]:
    return api.get(f"/v1/jobs/{job_id}").get_json()


def _kill_during(api: FlaskClient, job_id: str, attempt: int, process: subprocess.Popen) -> None:
    """SIGKILL the worker's whole process group while it runs the job's attempt."""

    def running() -> bool:
        job = _job(api, job_id)
        return job["status"] == "running" and job["attempts"] == attempt

    assert wait_for(running, timeout=60), _job(api, job_id)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_job_survives_kill_9_of_its_worker(
    slow_api: FlaskClient, workers: list, failover_env: dict[str, str], tmp_path: Path
) -> None:
    job_id = slow_api.post("/v1/jobs", json=JOB).get_json()["job_id"]
    _kill_during(slow_api, job_id, 1, workers[0])
    workers.append(start_worker(failover_env, tmp_path / "worker2.log"))
    assert wait_for(lambda: _job(slow_api, job_id)["status"] == "succeeded", timeout=90)
    job = _job(slow_api, job_id)
    assert job["attempts"] == 2
    assert job["result"]["outputs"][0]["shape"] == [1, 1]


def test_job_that_keeps_killing_its_worker_fails_after_the_cap(
    slow_api: FlaskClient, workers: list, failover_env: dict[str, str], tmp_path: Path
) -> None:
    job_id = slow_api.post("/v1/jobs", json=JOB).get_json()["job_id"]
    for attempt in (1, 2):
        _kill_during(slow_api, job_id, attempt, workers[-1])
        workers.append(start_worker(failover_env, tmp_path / f"worker{attempt + 1}.log"))
    assert wait_for(lambda: _job(slow_api, job_id)["status"] == "failed", timeout=90)
    job = _job(slow_api, job_id)
    assert "the worker running this job stopped 2 times" in job["error"]
    # The worker that refused it lives on: it answers the broker, after the refusal.
    celery = slow_api.application.extensions["farm"].celery
    answers = control.inspect(celery, "stats", timeout=10, limit=1)
    assert [stats["pid"] for stats in answers.values()] == [workers[-1].pid]


def test_a_worker_told_to_stop_finishes_its_job_and_leaves_no_heartbeat(
    slow_api: FlaskClient, workers: list, failover_env: dict[str, str]
) -> None:
    job_id = slow_api.post("/v1/jobs", json=JOB).get_json()["job_id"]

    def running() -> bool:
        job = _job(slow_api, job_id)
        return job["status"] == "running"

    assert wait_for(running, timeout=60), _job(slow_api, job_id)
    stop_group(workers[0], timeout=60)  # SIGTERM: a warm shutdown
    assert workers[0].returncode == 0
    job = _job(slow_api, job_id)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 1  # finished where it ran, not redelivered
    client = redis.Redis.from_url(failover_env["INFERENCE_FARM_BROKER_URL"])
    assert heartbeat.read_all(client) == {}
