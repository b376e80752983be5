"""The Overview and Workers pages in a real browser, against a real API and a real worker:
what they show comes live from /v1/events, without a reload."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.console.conftest import Console, axe_violations
from tests.integration.helpers import model_bytes, new_key, post_version, settled_http
from tests.onnx_models import tiny_mlp
from tests.services import wait_for

pytestmark = pytest.mark.integration
BOUND_S = 60
INFER_BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _hostname(console: Console) -> str:
    """The real worker's hostname, from GET /v1/workers once it answers."""
    found: list[str] = []

    def listed() -> bool:
        answer = httpx.get(
            console.url + "/v1/workers", headers=_auth(console.admin_key), timeout=10
        )
        found[:] = [w["hostname"] for w in answer.json().get("workers", [])]
        return bool(found)

    assert wait_for(listed, timeout=BOUND_S), "no worker answered"
    return found[0]


def _ready_model(console: Console, name: str) -> None:
    response = post_version(console.url, console.admin_key, name, model_bytes(tiny_mlp()))
    assert response.status_code == 202, response.text
    record = settled_http(console.url, console.admin_key, name, response.json()["version"])
    assert record["status"] == "ready", record


def _infer(console: Console, name: str) -> None:
    response = httpx.post(
        f"{console.url}/v2/models/{name}/infer", json=INFER_BODY,
        headers=_auth(console.admin_key), timeout=30,
    )  # fmt: skip
    assert response.status_code == 200, response.text


def _rps(console: Console) -> float:
    text = console.page.inner_text(".overview [data-metric=rps] .stat")
    return float(text.removesuffix("/s")) if text.endswith("/s") else 0.0


def test_overview_shows_the_worker_and_rising_requests_live(console: Console) -> None:
    hostname = _hostname(console)
    console.open()
    console.sign_in()
    page = console.page
    page.wait_for_selector(f".overview td:has-text('{hostname}')", timeout=BOUND_S * 1000)
    assert page.inner_text(".overview [data-metric=workers]") == "1"
    assert page.locator(".overview h2:has-text('Readiness') ~ p .badge").inner_text() == "ready"
    page.evaluate("window.notReloaded = true")
    _ready_model(console, "ovw")
    page.wait_for_selector(".overview td:has-text('ovw')", timeout=BOUND_S * 1000)
    deadline = time.monotonic() + BOUND_S
    while _rps(console) <= 0:  # a snapshot's rate covers the interval before it: keep sending
        assert time.monotonic() < deadline, "requests/s never rose above 0"
        _infer(console, "ovw")
        page.wait_for_timeout(200)
    assert page.evaluate("window.notReloaded") is True
    assert page.locator(".overview [data-metric=p50] .stat").inner_text().endswith("ms")
    page.wait_for_selector(".overview h2:has-text('Jobs')")
    assert axe_violations(page) == []
    assert console.errors == []


def test_overview_shows_only_the_parts_a_key_sees(console: Console, farm_database: str) -> None:
    key, _ = new_key(farm_database, ["infer"])
    console.open()
    console.sign_in(key)
    page = console.page
    page.wait_for_selector(".overview h2:has-text('Readiness')", timeout=BOUND_S * 1000)
    headings = page.eval_on_selector_all(".overview h2", "hs => hs.map(h => h.textContent)")
    assert headings == ["Readiness"]
    assert console.errors == []


def test_overview_waits_for_the_first_snapshot(console: Console) -> None:
    console.page.route("**/v1/events", lambda route: None)  # the stream never answers
    console.open()
    console.sign_in()
    console.page.wait_for_selector(".overview .waiting:has-text('waiting for the first snapshot')")


def test_workers_page_lists_the_real_worker_live(console: Console) -> None:
    hostname = _hostname(console)
    console.open()
    console.sign_in()
    console.go("workers")
    page = console.page
    card = page.locator(".worker", has=page.locator("h2", has_text=hostname))
    card.wait_for(timeout=BOUND_S * 1000)
    assert card.locator(".device").inner_text() == "cpu"
    assert "farm.control" in card.locator(".queue-list").inner_text()
    assert "No session loaded." in card.locator(".sessions").inner_text()
    _ready_model(console, "wrk")
    _infer(console, "wrk")
    card.locator(".sessions td", has_text="wrk").wait_for(timeout=BOUND_S * 1000)
    assert "farm.model.wrk" in card.locator(".queue-list").inner_text()
    page.click("button:has-text('Details')")
    details = page.locator(".details table")
    details.wait_for(timeout=BOUND_S * 1000)
    assert hostname in details.inner_text() and "farm.control (0)" in details.inner_text()
    assert "wrk" in details.inner_text()
    assert axe_violations(page) == []
    assert console.errors == []


def test_the_flower_link_takes_only_http_urls(console: Console) -> None:
    console.open()
    page = console.page
    page.wait_for_selector("form.signin")
    page.evaluate("document.body.dataset.flowerUrl = 'javascript:alert(1)'")
    console.sign_in()
    console.go("workers")
    page.wait_for_selector("main h1:has-text('Workers')")
    assert page.locator("a.flower").count() == 0
    page.evaluate("document.body.dataset.flowerUrl = 'https://flower.example/tasks'")
    console.go("overview")
    console.go("workers")
    assert page.get_attribute("a.flower", "href") == "https://flower.example/tasks"
    assert console.errors == []
