"""Prometheus metrics of the API and a worker move by exactly the requests made; job log lines."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import httpx
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from inference_farm.api import create_app
from inference_farm.cli.embedded_redis import free_port
from inference_farm.settings import Settings, load_settings
from tests import onnx_models
from tests.integration.conftest import start_worker
from tests.integration.helpers import (
    authorized,
    model_bytes,
    new_key,
    ready_version,
    settled,
    upload,
)
from tests.services import stop_group, wait_for

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
ROUTE = "/v2/models/<name>/infer"
TINY = {"model": "tiny", "version": "1.0.0", "device": "cpu"}

Samples = dict[tuple[str, frozenset], float]


def parse(text: str) -> Samples:
    """Every sample of a text exposition, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sample's value; 0 when the series does not exist (yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How far one series moved between two scrapes."""
    return value(after, name, **labels) - value(before, name, **labels)


def _scrape(url: str, **kwargs: object) -> Samples:
    response = httpx.get(url, timeout=10, **kwargs)
    assert response.status_code == 200, response.text
    return parse(response.text)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _job_lines(log_path: Path) -> list[dict]:
    lines = []
    for line in log_path.read_text().splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue  # Celery's own banner is not a log record
        if isinstance(document, dict) and "job_id" in document:
            lines.append(document)
    return lines


def test_api_and_worker_metrics_count_the_requests_made(
    api: FlaskClient, api_url: str, admin_key: str, farm_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    env = {**farm_env, "INFERENCE_FARM_WORKER_METRICS_PORT": str(port)}
    env["INFERENCE_FARM_LOG_FORMAT"] = "json"
    ready_version(env["INFERENCE_FARM_DATABASE_URL"], "ghost")  # before the worker starts
    worker = start_worker(env, tmp_path / "worker.log")
    worker_url = f"http://127.0.0.1:{port}/metrics"
    http = httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {admin_key}"})
    try:
        # Up before the upload, so that the worker hears the new model's announcement.
        assert wait_for(lambda: _answers(worker_url), timeout=60)
        assert upload(api, "tiny", model_bytes(onnx_models.tiny_mlp())).status_code == 202
        assert settled(api, "tiny", "1.0.0")["status"] == "ready"
        [listed] = api.get("/v1/workers").get_json()["workers"]
        assert listed["metrics_port"] == port and listed["last_heartbeat"]
        api_before = _scrape(f"{api_url}/metrics", headers=http.headers)
        worker_before = _scrape(worker_url)

        for index in range(3):
            response = http.post(ROUTE.replace("<name>", "tiny"), json=BODY, timeout=30,
                                 headers={"X-Request-ID": f"req-{index}"})  # fmt: skip
            assert response.status_code == 200, response.text
            assert response.headers["X-Request-ID"] == f"req-{index}"
        # Passes the API's checks, fails on the worker (its artifact is missing): one failure.
        failed = http.post("/v2/models/ghost/infer", json=BODY, timeout=30)
        assert failed.status_code >= 400, failed.text
        # Fails the API's checks: never reaches a worker.
        wrong = {"inputs": [{**BODY["inputs"][0], "shape": [1, 3], "data": [1, 2, 3]}]}
        refused = http.post("/v2/models/tiny/infer", json=wrong, timeout=30)
        assert refused.status_code == 400
        assert len(refused.headers["X-Request-ID"]) == 32  # none sent: one made up

        api_after = _scrape(f"{api_url}/metrics", headers=http.headers)
        worker_after = _scrape(worker_url)
    finally:
        stop_group(worker)

    requests = "inference_farm_http_requests_total"
    answered = (("tiny", "200", 3), ("tiny", "400", 1), ("ghost", str(failed.status_code), 1))
    for model, status, count in answered:
        labels = {"method": "POST", "route": ROUTE, "model": model, "status": status}
        assert moved(api_before, api_after, requests, **labels) == count
    latency = "inference_farm_http_request_duration_seconds_count"
    assert moved(api_before, api_after, latency, method="POST", route=ROUTE, model="tiny") == 4
    depth = (
        "inference_farm_queue_depth",
        frozenset({"queue": "farm.model.tiny", "model": "tiny"}.items()),
    )
    assert api_after[depth] == 0

    def worker_moved(name: str, **labels: str) -> float:
        return moved(worker_before, worker_after, name, **{**TINY, **labels})

    assert worker_moved("inference_farm_inference_request_success_total") == 3
    ghost = {"model": "ghost", "version": "1.0.0", "device": "cpu", "outcome": "failed"}
    assert moved(worker_before, worker_after, "inference_farm_inference_request_failure_total",
                 **ghost) == 1  # fmt: skip
    for phase in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert worker_moved(f"inference_farm_inference_{phase}_duration_seconds_count") == 3
    assert worker_moved("inference_farm_inference_batch_size_count") == 3
    assert worker_moved("inference_farm_inference_batch_size_sum") == 3
    assert worker_moved("inference_farm_cache_misses_total") == 1
    assert worker_moved("inference_farm_cache_hits_total") == 2
    assert worker_moved("inference_farm_model_load_duration_seconds_count") == 1
    assert value(worker_after, "inference_farm_model_loaded_bytes", **TINY) > 0

    lines = {line.get("request_id"): line for line in _job_lines(tmp_path / "worker.log")}
    line = lines["req-1"]
    assert (line["model"], line["version"], line["outcome"], line["batch_size"]) == (
        "tiny", "1.0.0", "succeeded", 1,
    )  # fmt: skip
    assert line["queue_wait_ms"] >= 0 and line["compute_ms"] >= 0
    assert len(line["job_id"]) == 36


def test_jobs_by_status_and_rate_limit_rejections(
    api: FlaskClient, farm_settings: Settings, worker: subprocess.Popen
) -> None:
    assert wait_for(lambda: api.get("/v1/workers").get_json()["workers"], timeout=60)
    assert upload(api, "tiny", model_bytes(onnx_models.tiny_mlp())).status_code == 202
    assert settled(api, "tiny", "1.0.0")["status"] == "ready"
    before = parse(api.get("/metrics").get_data(as_text=True))
    job = api.post("/v1/jobs", json={"model": "tiny", **BODY}, headers={"X-Request-ID": "job-7"})
    assert job.status_code == 202
    job_id = job.get_json()["job_id"]
    assert wait_for(lambda: api.get(f"/v1/jobs/{job_id}").get_json()["status"] == "succeeded",
                    timeout=30)  # fmt: skip
    key, _ = new_key(farm_settings.effective_database_url, ["models:read"], rate_per_second=1.0,
                     burst=1)  # fmt: skip
    limited = authorized(api.application, key)
    statuses = [limited.post("/v2/repository/index").status_code for _ in range(2)]
    assert statuses == [200, 429]
    after = parse(api.get("/metrics").get_data(as_text=True))

    assert value(after, "inference_farm_jobs", kind="infer", model="tiny", status="succeeded") == 1
    labels = {"method": "POST", "route": "/v1/jobs", "model": "tiny", "status": "202"}
    assert moved(before, after, "inference_farm_http_requests_total", **labels) == 1
    assert moved(before, after, "inference_farm_rate_limit_rejections_total", limit="key_rate") == 1
    from inference_farm.registry import Database
    from inference_farm.registry.models import Job

    database = Database(farm_settings.effective_database_url)
    assert database.session().get(Job, job_id).request_id == "job-7"
    database.remove()
    database.engine.dispose()


def test_metrics_scope_is_a_setting(farm_env: dict[str, str], farm_settings: Settings) -> None:
    url = farm_settings.effective_database_url
    guarded = create_app(farm_settings).test_client()
    assert guarded.get("/metrics").status_code == 401
    jobs_key, _ = new_key(url, ["jobs"])
    assert (
        guarded.get("/metrics", headers={"Authorization": f"Bearer {jobs_key}"}).status_code == 403
    )
    scraper, _ = new_key(url, ["metrics"])
    scraped = guarded.get("/metrics", headers={"Authorization": f"Bearer {scraper}"})
    assert scraped.status_code == 200
    assert "inference_farm_http_requests_total" in scraped.get_data(as_text=True)
    opened = load_settings(env={**farm_env, "INFERENCE_FARM_METRICS_SCOPE": "open"})
    assert create_app(opened).test_client().get("/metrics").status_code == 200


def test_worker_whose_metrics_port_is_taken_still_serves(
    api: FlaskClient, farm_env: dict[str, str], tmp_path: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {**farm_env, "INFERENCE_FARM_WORKER_METRICS_PORT": str(port)}
        worker = start_worker(env, tmp_path / "worker.log")
        try:

            def listed() -> list:
                return api.get("/v1/workers").get_json()["workers"]

            assert wait_for(lambda: any(w["last_heartbeat"] for w in listed()), timeout=60)
            [one] = listed()
            assert one["metrics_port"] is None
            assert one["device"] == "cpu"
            assert worker.poll() is None
        finally:
            stop_group(worker)
    warnings = [
        line
        for line in (tmp_path / "worker.log").read_text().splitlines()
        if "worker metrics are off" in line
    ]
    assert len(warnings) == 1, warnings
    assert str(port) in warnings[0]
