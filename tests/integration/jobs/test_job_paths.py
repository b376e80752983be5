"""Jobs end to end through the real API and a real worker: sync infer served ahead of the jobs
queued before it, a timeout that passes while a job waits, cancelling a job that runs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from inference_farm.broker.names import model_queue
from tests import onnx_models
from tests.integration.helpers import (
    beat_for,
    model_bytes,
    post_version,
    ready_version,
    settled_http,
)
from tests.services import wait_for

WIDTH = 1024  # steady_model's input: [1, WIDTH]
LAYERS = 64  # a run of about a second on 2 idle cores: far longer than a few HTTP calls


def body(value: float) -> dict[str, Any]:
    """A steady_model input of value everywhere; its answer is WIDTH * WIDTH * value."""
    return {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, WIDTH], "data": [value] * WIDTH}]
    }


def job_body(value: float, **fields: Any) -> dict[str, Any]:
    """A /v1/jobs request for the slow model."""
    return {"model": "slow", **body(value), **fields}


@pytest.fixture
def http(api_url: str, admin_key: str) -> Iterator[httpx.Client]:
    """An HTTP client of the real API, sending an admin key."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=api_url, headers=headers, timeout=60) as client:
        yield client


@pytest.fixture
def slow(api_url: str, admin_key: str, worker: subprocess.Popen) -> subprocess.Popen:
    """steady_model, ready as 'slow' and served by the worker; the worker."""
    content = model_bytes(onnx_models.steady_model(WIDTH, LAYERS))
    assert post_version(api_url, admin_key, "slow", content).status_code == 202
    assert settled_http(api_url, admin_key, "slow", "1.0.0")["status"] == "ready"
    return worker


def submit(http: httpx.Client, payload: dict[str, Any]) -> str:
    """POST a job; its id."""
    response = http.post("/v1/jobs", json=payload)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def status_of(http: httpx.Client, job_id: str) -> str:
    """The job's status now."""
    return http.get(f"/v1/jobs/{job_id}").json()["status"]


def job_lines(worker: subprocess.Popen) -> list[str]:
    """The worker's one line per finished request, in the order they finished."""
    lines = Path(worker.log_path).read_text().splitlines()
    return [line for line in lines if " job job_id=" in line]


def line_of(worker: subprocess.Popen, needle: str) -> int | None:
    """Index among job_lines of the first line holding needle; None if none does yet."""
    return next((i for i, line in enumerate(job_lines(worker)) if needle in line), None)


def answer_of(document: dict[str, Any]) -> float:
    """The one value of a steady_model answer."""
    [output] = document["outputs"]
    return output["data"][0]


def test_sync_goes_first_a_timeout_expires_and_a_running_job_cancels(
    http: httpx.Client, slow: subprocess.Popen
) -> None:
    busy = submit(http, job_body(1))
    assert wait_for(lambda: status_of(http, busy) == "running", 30)
    late = submit(http, job_body(1, timeout=0.3))  # waits behind runs of a second or more
    queued = [submit(http, job_body(1)) for _ in range(2)]
    # Sync infer runs at priority 9: answered before the jobs queued ahead of it end.
    answer = http.post("/v2/models/slow/infer", json=body(3), headers={"X-Request-ID": "ahead"})
    assert answer.status_code == 200, answer.text
    assert answer_of(answer.json()) == 3 * WIDTH * WIDTH
    assert [line_of(slow, f"job_id={j} ") for j in queued] == [None, None], job_lines(slow)
    _expired_by_the_worker(http, slow, late)
    _cancel_while_running(http, slow, *queued)
    order = [line_of(slow, needle) for needle in (f"job_id={busy} ", "request_id=ahead")]
    order += [line_of(slow, f"job_id={j} ") for j in (late, queued[0])]
    assert None not in order and order == sorted(order), job_lines(slow)
    after = submit(http, job_body(2))  # the worker still serves, and took it after queued[1]
    assert wait_for(lambda: status_of(http, after) == "succeeded", 60)
    assert status_of(http, queued[1]) == "cancelled" and line_of(slow, queued[1]) is None
    assert answer_of(http.get(f"/v1/jobs/{after}").json()["result"]) == 2 * WIDTH * WIDTH


def _expired_by_the_worker(http: httpx.Client, worker: subprocess.Popen, late: str) -> None:
    """The job whose timeout passed in the queue is dropped unrun, and its record says so."""
    assert wait_for(lambda: line_of(worker, f"job_id={late} ") is not None, 60)
    assert "outcome=expired" in job_lines(worker)[line_of(worker, f"job_id={late} ")]
    job = http.get(f"/v1/jobs/{late}").json()
    assert job["status"] == "expired", job
    assert job["error"].startswith("the job expired before a worker could run it"), job
    assert (job["started_at"], job["attempts"]) == (None, 0)


def _cancel_while_running(
    http: httpx.Client, worker: subprocess.Popen, running: str, waiting: str
) -> None:
    """Cancel a job mid-run and one still queued: both end cancelled, and stay so."""
    assert wait_for(lambda: status_of(http, running) == "running", 30)
    for job_id in (running, waiting):
        cancelled = http.delete(f"/v1/jobs/{job_id}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    # The run was under way: it ends, and its outcome must not overwrite the cancel.
    assert wait_for(lambda: line_of(worker, f"job_id={running} ") is not None, 60)
    for job_id, started in ((running, True), (waiting, False)):
        job = http.get(f"/v1/jobs/{job_id}").json()
        assert (job["status"], job["error"]) == ("cancelled", "cancelled by request"), job
        assert bool(job["started_at"]) is started and job["finished_at"], job
        assert "result" not in job
    again = http.delete(f"/v1/jobs/{running}")
    assert again.status_code == 409 and "already ended: it is cancelled" in again.json()["error"]


def test_a_job_no_worker_takes_ends_expired(
    http: httpx.Client, farm_database: str, broker_url: str
) -> None:
    """A job no worker takes still ends expired once its timeout is up: never stuck queued."""
    ready_version(farm_database, "idle")  # no worker runs: an all-models one would take it
    beat_for(broker_url, model_queue("idle"))
    x = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}
    stranded = submit(http, {"model": "idle", "inputs": [x], "timeout": 0.3})
    assert wait_for(lambda: status_of(http, stranded) != "queued", 10), "stuck queued"
    job = http.get(f"/v1/jobs/{stranded}").json()
    assert job["status"] == "expired", job
    assert job["error"].startswith("the job expired before a worker could run it"), job
    assert job["finished_at"] is not None
    listed = http.get("/v1/jobs", params={"status": "expired", "model": "idle"}).json()
    assert [j["job_id"] for j in listed["jobs"]] == [stranded]
