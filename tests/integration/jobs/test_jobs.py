"""Submit-and-poll jobs through REST with a real worker: results, batches, listing, cancel."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from flask.testing import FlaskClient

from inference_farm.api import create_app
from inference_farm.broker.app import create_celery
from inference_farm.broker.names import model_queue
from inference_farm.broker.queues import FULL_CHECK_S, QueueWatch
from inference_farm.settings import load_settings
from tests import onnx_models
from tests.integration.helpers import (
    LiveClient,
    authorized,
    beat_for,
    client_for,
    model_bytes,
    new_admin_key,
    ready_version,
    settled,
    upload,
)
from tests.services import wait_for

X = [[0.1, 0.2, 0.3, 0.4]]
JOB = {"model": "tiny", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": X}]}


@pytest.fixture
def tiny(api: FlaskClient, worker: subprocess.Popen) -> str:
    assert upload(api, "tiny", model_bytes(onnx_models.tiny_mlp())).status_code == 202
    assert settled(api, "tiny", "1.0.0")["status"] == "ready"
    return "tiny"


def poll(api: FlaskClient, job_id: str, timeout: float = 60) -> dict[str, Any]:
    """The job once it has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.get(f"/v1/jobs/{job_id}").get_json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not end: {job}")


def test_submit_then_poll_gets_the_result(api: FlaskClient, live: LiveClient, tiny: str) -> None:
    response = api.post("/v1/jobs", json=JOB)
    assert response.status_code == 202, response.get_json()
    ref = response.get_json()
    assert ref["status_url"] == f"/v1/jobs/{ref['job_id']}"
    job = poll(api, ref["job_id"])
    assert job["status"] == "succeeded", job
    assert (job["model"], job["version"], job["attempts"]) == ("tiny", "1.0.0", 1)
    assert job["started_at"] and job["finished_at"]
    [output] = job["result"]["outputs"]
    sync = live.post("/v2/models/tiny/infer", json={"inputs": JOB["inputs"]}).get_json()
    assert output == sync["outputs"][0]


def test_batch_gives_one_job_per_request_and_a_batch_status(api: FlaskClient, tiny: str) -> None:
    requests = [{**JOB, "inputs": [{**JOB["inputs"][0], "data": [[i, i, i, i]]}]} for i in range(3)]
    response = api.post("/v1/jobs", json={"requests": requests})
    assert response.status_code == 202, response.get_json()
    batch = response.get_json()
    assert len(batch["jobs"]) == 3
    results = [poll(api, ref["job_id"])["result"]["outputs"][0]["data"] for ref in batch["jobs"]]
    assert len({tuple(r) for r in results}) == 3  # each job answered its own input
    status = api.get(batch["status_url"]).get_json()
    assert (status["total"], status["done"], status["counts"]) == (3, True, {"succeeded": 3})
    listed = api.get(f"/v1/jobs?batch_id={batch['batch_id']}&limit=2").get_json()
    assert (listed["total"], len(listed["jobs"])) == (3, 2)


def test_a_bad_request_in_a_batch_queues_nothing(api: FlaskClient, tiny: str) -> None:
    bad = {**JOB, "inputs": [{**JOB["inputs"][0], "datatype": "INT64", "data": [[1, 2, 3, 4]]}]}
    response = api.post("/v1/jobs", json={"requests": [JOB, bad]})
    assert response.status_code == 400
    assert response.get_json()["error"].startswith("requests[1]: input 'x'")
    assert api.get("/v1/jobs").get_json()["total"] == 0


@pytest.mark.parametrize(
    "body, status",
    [
        ([JOB], 400),
        ({**JOB, "model": "ghost"}, 404),
        ({**JOB, "priority": 11}, 400),
        ({"model": "tiny"}, 400),
    ],
    ids=["list-body", "unknown-model", "bad-priority", "no-inputs"],
)
def test_bad_job_requests(api: FlaskClient, tiny: str, body: object, status: int) -> None:
    response = api.post("/v1/jobs", json=body)
    assert response.status_code == status, response.get_json()


def test_unknown_job_is_404(api: FlaskClient) -> None:
    assert api.get("/v1/jobs/00000000-0000-0000-0000-000000000000").status_code == 404
    assert api.delete("/v1/jobs/nope").status_code == 404


def test_cancelled_queued_job_never_runs(
    api: FlaskClient, farm_settings: Any, request: pytest.FixtureRequest
) -> None:
    ready_version(farm_settings.effective_database_url, "tiny")
    beat_for(farm_settings.broker_url, model_queue("tiny"))
    job_id = api.post("/v1/jobs", json=JOB).get_json()["job_id"]
    cancelled = api.delete(f"/v1/jobs/{job_id}")
    assert cancelled.status_code == 200 and cancelled.get_json()["status"] == "cancelled"
    assert api.delete(f"/v1/jobs/{job_id}").status_code == 409

    worker = request.getfixturevalue("worker")  # now a worker consumes the queue
    log = Path(worker.log_path)

    # The worker's one line for the job says it took the job and dropped it unrun.
    def dropped() -> bool:
        lines = log.read_text().splitlines()
        return any(f"job_id={job_id} " in line and "outcome=cancelled" in line for line in lines)

    assert wait_for(dropped, 60)
    job = api.get(f"/v1/jobs/{job_id}").get_json()
    assert (job["status"], job["started_at"]) == ("cancelled", None)
    assert "result" not in job


def _depth(api: FlaskClient, name: str) -> int:
    return api.application.extensions["farm"].queues.depth(model_queue(name))


def test_queue_full_gets_429_with_retry_after(farm_env: dict[str, str]) -> None:
    settings = load_settings(env={**farm_env, "INFERENCE_FARM_MAX_QUEUE_LENGTH": "1"})
    app = create_app(settings)
    ready_version(settings.effective_database_url, "tiny")
    beat_for(settings.broker_url or "", model_queue("tiny"))
    client = authorized(app, new_admin_key(settings.effective_database_url))
    assert client.post("/v1/jobs", json=JOB).status_code == 202
    full = client.post("/v1/jobs", json=JOB)
    assert full.status_code == 429
    assert full.headers["Retry-After"] == "1"
    assert "is full" in full.get_json()["error"]
    assert _depth(client, "tiny") == 1


def test_the_queue_full_check_counts_jobs_sent_since_its_last_read(broker_url: str) -> None:
    watch = QueueWatch(create_celery(load_settings(env={}, broker_url=broker_url)), broker_url)
    queue = model_queue("counted")
    assert not watch.full(queue, 2)
    watch.sent(queue)
    assert not watch.full(queue, 2)
    watch.sent(queue)
    assert watch.full(queue, 2)  # two sent here, though Redis holds none
    # Once the read ages out, a fresh one says the queue is empty; then it sees Redis fill.
    assert wait_for(lambda: not watch.full(queue, 2), timeout=5, interval=FULL_CHECK_S / 4)
    redis.Redis.from_url(broker_url).lpush(queue, "a", "b")
    assert wait_for(lambda: watch.full(queue, 2), timeout=5, interval=FULL_CHECK_S / 4)


def test_no_live_worker_gets_503(api: FlaskClient, live: LiveClient, farm_settings: Any) -> None:
    ready_version(farm_settings.effective_database_url, "orphan")
    response = live.post("/v2/models/orphan/infer", json={"inputs": JOB["inputs"]})
    assert response.status_code == 503
    assert "no live worker serves model 'orphan'" in response.get_json()["error"]
    assert response.headers["Retry-After"] == "5"


def test_a_job_can_wait_for_a_pool_that_scales_from_zero(
    farm_env: dict[str, str], tmp_path: Any
) -> None:
    from tests.integration.conftest import start_worker
    from tests.services import stop_group

    env = {**farm_env, "INFERENCE_FARM_JOBS_WAIT_FOR_WORKERS": "true"}
    strict, waiting = client_for(load_settings(env=farm_env)), client_for(load_settings(env=env))
    # This worker validates uploads (farm.control) but serves no queue of tiny's.
    control = start_worker(farm_env, tmp_path / "control.log", "--models", "other")
    pool = None
    try:
        assert upload(strict, "tiny", model_bytes(onnx_models.tiny_mlp())).status_code == 202
        assert settled(strict, "tiny", "1.0.0")["status"] == "ready"
        refused = strict.post("/v1/jobs", json=JOB)
        assert refused.status_code == 503, refused.get_json()  # the default: no worker, no job
        response = waiting.post("/v1/jobs", json=JOB)
        assert response.status_code == 202, response.get_json()
        status = lambda: waiting.get(response.get_json()["status_url"]).get_json()["status"]  # noqa: E731
        assert status() == "queued"
        pool = start_worker(farm_env, tmp_path / "pool.log", "--models", "tiny")  # from zero
        assert wait_for(lambda: status() == "succeeded", timeout=60), status()
    finally:
        for process in (control, pool):
            if process is not None:
                stop_group(process)


def test_an_expired_result_is_said_plainly(farm_env: dict[str, str], tmp_path: Any) -> None:
    from tests.integration.conftest import start_worker
    from tests.services import stop_group

    env = {**farm_env, "INFERENCE_FARM_RESULT_EXPIRES": "2"}
    client = client_for(load_settings(env=env))
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        upload(client, "tiny", model_bytes(onnx_models.tiny_mlp()))
        assert settled(client, "tiny", "1.0.0")["status"] == "ready"
        job_id = client.post("/v1/jobs", json=JOB).get_json()["job_id"]
        assert poll(client, job_id)["result"] is not None

        def expired() -> bool:
            return client.get(f"/v1/jobs/{job_id}").get_json()["result_expired"]

        assert wait_for(expired, timeout=20)
        job = client.get(f"/v1/jobs/{job_id}").get_json()
        assert (job["status"], job["result"], job["result_expired"]) == ("succeeded", None, True)
        assert job["message"] == "the result has expired: results are kept 2 seconds"
    finally:
        stop_group(worker)
