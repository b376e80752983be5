"""The console's Jobs page in a real browser, against a real API and worker: a job submitted
from outside appears live and ends, its detail view, and cancelling one from the page."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from inference_farm.broker import events
from tests import onnx_models
from tests.integration.console.conftest import Console, axe_violations
from tests.integration.helpers import model_bytes, post_version, settled_http
from tests.services import wait_for

pytestmark = pytest.mark.integration
X = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [0.1, 0.2, 0.3, 0.4]}
WIDTH = 1024  # steady_model's input: [1, WIDTH]; a run takes about a second on 2 cores


@pytest.fixture
def http(console: Console) -> Iterator[httpx.Client]:
    """An HTTP client of the console's API, sending the admin key, from outside the browser."""
    headers = {"Authorization": f"Bearer {console.admin_key}"}
    with httpx.Client(base_url=console.url, headers=headers, timeout=60) as client:
        yield client


def ready(console: Console, name: str, content: bytes) -> None:
    """Upload content as model name through REST and wait until it is ready."""
    response = post_version(console.url, console.admin_key, name, content)
    assert response.status_code == 202, response.text
    assert settled_http(console.url, console.admin_key, name, "1.0.0")["status"] == "ready"


def submit(http: httpx.Client, body: dict[str, Any]) -> str:
    """POST one job; its id."""
    response = http.post("/v1/jobs", json=body)
    assert response.status_code == 202, response.text
    return response.json()["job_id"]


def subscribers(broker_url: str) -> int:
    """How many listen to the farm's changes (the API's event hub, once a console watches)."""
    client = redis.Redis.from_url(broker_url)
    name = events.channel(client)
    try:
        return dict(client.pubsub_numsub(name)).get(name.encode(), 0)
    finally:
        client.close()


def open_jobs(console: Console) -> Any:
    """Sign in on the Jobs page; the page once its list has loaded."""
    console.open("#/jobs")
    console.sign_in()
    console.page.wait_for_selector("#jobs-summary:has-text('of')")
    return console.page


def test_a_job_submitted_outside_appears_live_and_succeeds(
    console: Console, http: httpx.Client, broker_url: str
) -> None:
    ready(console, "tiny", model_bytes(onnx_models.tiny_mlp()))
    page = open_jobs(console)
    assert page.inner_text("#jobs-summary") == "none of 0"
    page.wait_for_selector(".link-state:has-text('live')")
    # The console's stream has joined the API's hub, which now listens for changes.
    assert wait_for(lambda: subscribers(broker_url) > 0, 30)

    job_id = submit(http, {"model": "tiny", "inputs": [X]})
    page.wait_for_selector(f"tr[data-job-id='{job_id}'][data-status=succeeded]")
    assert http.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"
    assert page.inner_text("#jobs-summary") == "1\u20131 of 1"
    assert axe_violations(page) == []

    page.click(f"tr[data-job-id='{job_id}'] a")
    page.wait_for_selector(f"main h1:has-text('{job_id}')")
    result = http.get(f"/v1/jobs/{job_id}").json()["result"]["outputs"][0]
    shown = page.inner_text("code.pg-values[data-output=y]")
    assert json.loads(shown) == result["data"]
    assert page.locator("main dd", has_text="1.0.0").count() == 1
    assert axe_violations(page) == []
    assert console.errors == []


def test_a_queued_job_is_cancelled_from_the_page(console: Console, http: httpx.Client) -> None:
    ready(console, "slow", model_bytes(onnx_models.steady_model(WIDTH, 64)))
    slow = {"model": "slow", "inputs": [{**X, "shape": [1, WIDTH], "data": [1.0] * WIDTH}]}
    busy = [submit(http, {**slow, "priority": 9}) for _ in range(3)]  # seconds of work first
    waiting = submit(http, {**slow, "priority": 0})
    page = open_jobs(console)
    page.wait_for_selector(f"tr[data-job-id='{waiting}'][data-status=queued]")
    page.click(f"button[data-cancel='{waiting}']")
    page.wait_for_selector("#confirm[open]")
    page.click("#confirm-ok")
    page.wait_for_selector(f"tr[data-job-id='{waiting}'][data-status=cancelled]")
    job = http.get(f"/v1/jobs/{waiting}").json()
    assert (job["status"], job["error"]) == ("cancelled", "cancelled by request"), job
    assert page.query_selector(f"button[data-cancel='{waiting}']") is None
    assert all(http.get(f"/v1/jobs/{j}").json()["status"] != "cancelled" for j in busy)
    assert console.errors == []
