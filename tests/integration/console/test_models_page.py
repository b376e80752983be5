"""The console's Models page in a real browser, on a real API and a real worker: an upload
turning ready live, user text rendered as text, pinning and retiring, axe, and read-only keys."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.integration.console.conftest import Console, axe_violations
from tests.integration.helpers import model_bytes, new_key, post_version, settled_http
from tests.onnx_models import tiny_mlp

pytestmark = pytest.mark.integration

XSS = "<img src=x onerror=alert(1)>"


def _rest(console: Console, method: str, path: str, **kwargs: object) -> httpx.Response:
    headers = {"Authorization": f"Bearer {console.admin_key}"}
    return httpx.request(method, console.url + path, headers=headers, timeout=30, **kwargs)


def _ready_model(console: Console, name: str, **form: str) -> None:
    """A model with one ready version, uploaded over REST."""
    response = post_version(console.url, console.admin_key, name, model_bytes(tiny_mlp()), **form)
    assert response.status_code == 202, response.text
    version = response.json()["version"]
    assert settled_http(console.url, console.admin_key, name, version)["status"] == "ready"


def _signed_in(console: Console, hash_: str, key: str | None = None) -> None:
    console.open(hash_)
    console.sign_in(key)
    console.page.wait_for_selector(".link-state:has-text('live')")


def test_an_upload_turns_ready_live_without_a_reload(console: Console, tmp_path: Path) -> None:
    model_file = tmp_path / "tiny.onnx"
    model_file.write_bytes(model_bytes(tiny_mlp()))
    _signed_in(console, "#/models")
    page = console.page
    page.wait_for_selector("main h1:has-text('Models')")
    page.evaluate("window.__marker = 1")
    page.fill("#upload-model", "live-up")
    page.set_input_files("#upload-file", str(model_file))
    page.fill("#upload-description", "uploaded from the console")
    page.click("form.upload button[type=submit]")
    page.wait_for_selector(".upload-results li:has-text('live-up 1.0.0')")
    assert page.locator("#upload-progress").evaluate("p => p.value") == 1
    page.wait_for_selector(".upload-results li[data-status=ready] .badge.s-ready")
    row = page.locator("main table[aria-label=Models] tr", has_text="live-up")
    row.locator(".badge.s-ready").wait_for()
    assert page.evaluate("window.__marker") == 1  # the same document: nothing reloaded
    record = _rest(console, "GET", "/v1/models/live-up/versions/1.0.0").json()
    assert record["status"] == "ready" and record["description"] == "uploaded from the console"
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    page.fill("#upload-model", "live-up")
    page.set_input_files("#upload-file", str(broken))
    page.click("form.upload button[type=submit]")
    failed = page.wait_for_selector(".upload-results li[data-status=failed]:has-text('1.0.1')")
    assert failed.query_selector(".error").inner_text().strip()  # the reason, shown
    assert page.evaluate("window.__marker") == 1
    assert console.errors == []


def test_user_text_is_rendered_as_text(console: Console) -> None:
    created = _rest(console, "POST", "/v1/models", json={"name": "xss", "description": XSS})
    assert created.status_code == 201, created.text
    _ready_model(console, "xss", description=XSS)
    _signed_in(console, "#/models")
    page = console.page
    page.get_by_text(XSS, exact=True).wait_for()
    assert page.locator("main img").count() == 0
    page.click("main a:has-text('xss')")
    page.wait_for_selector("main article.version .badge.s-ready")
    assert page.get_by_text(XSS, exact=True).count() == 2  # the model's and the version's
    assert page.locator("main img").count() == 0
    assert console.errors == []  # no alert(): the fixture records dialogs here


def test_pin_unpin_and_retire_with_confirmation(console: Console) -> None:
    _ready_model(console, "pins")
    _ready_model(console, "pins")  # 1.0.0 and 1.0.1
    _signed_in(console, "#/models/pins")
    page = console.page
    page.click("main button:has-text('Pin 1.0.0 as default')")
    page.wait_for_selector("main article[aria-label='Version 1.0.0'] .badge.pinned")
    assert _rest(console, "GET", "/v1/models/pins").json()["default_version"] == "1.0.0"
    page.click("main button:has-text('Unpin 1.0.0')")
    page.wait_for_selector("main button:has-text('Pin 1.0.0 as default')")
    assert _rest(console, "GET", "/v1/models/pins").json()["default_version"] is None
    page.click("main button:has-text('Retire 1.0.1')")
    page.wait_for_selector("#confirm[open]")
    page.click("#confirm-cancel")
    page.wait_for_selector("#confirm:not([open])", state="attached")
    assert _rest(console, "GET", "/v1/models/pins/versions/1.0.1").json()["status"] == "ready"
    page.click("main button:has-text('Retire 1.0.1')")
    page.click("#confirm-ok")
    page.wait_for_selector("main article[aria-label='Version 1.0.1']", state="detached")
    assert _rest(console, "GET", "/v1/models/pins/versions/1.0.1").json()["status"] == "retired"
    page.click("main button:has-text('Delete model')")
    page.click("#confirm-ok")
    page.wait_for_url("**/console/#/models")
    assert _rest(console, "GET", "/v1/models/pins").status_code == 404
    assert console.errors == []


def test_description_batching_load_and_unload(console: Console) -> None:
    _ready_model(console, "knobs")
    _signed_in(console, "#/models/knobs")
    page = console.page
    page.fill("#model-description", "tuned")
    page.click("main button:has-text('Save description')")
    page.wait_for_selector(".model-head dd:has-text('tuned')")
    page.fill("#max-batch-size", "8")
    page.fill("#max-queue-delay", "2.5")
    page.click("main button:has-text('Save batching limits')")
    page.wait_for_selector(".model-head dd:has-text('batch ≤ 8, wait ≤ 2.5 ms')")
    model = _rest(console, "GET", "/v1/models/knobs").json()
    assert (model["description"], model["max_batch_size"], model["max_queue_delay_ms"]) == (
        "tuned",
        8,
        2.5,
    )
    page.fill("#max-batch-size", "")
    page.click("main button:has-text('Save batching limits')")
    page.wait_for_selector(".model-head dd:has-text('batch ≤ farm default, wait ≤ 2.5 ms')")
    assert _rest(console, "GET", "/v1/models/knobs").json()["max_batch_size"] is None
    page.click("main button:text-is('Load')")
    page.wait_for_selector("#notice .msg.info:has-text('Loading knobs')")
    page.click("main button:text-is('Unload')")
    page.wait_for_selector("#notice .msg.info:has-text('Unloaded knobs')")
    assert console.errors == []


def test_the_list_and_a_model_pass_axe(console: Console) -> None:
    _ready_model(console, "axe-model", description="for axe")
    _signed_in(console, "#/models")
    page = console.page
    page.wait_for_selector("main table[aria-label=Models] .badge.s-ready")
    assert axe_violations(page) == []
    page.click("main a:has-text('axe-model')")
    page.wait_for_selector("main article.version table")
    assert axe_violations(page) == []


def test_a_read_only_key_sees_no_write_controls(console: Console, farm_database: str) -> None:
    _ready_model(console, "readonly")
    key, _ = new_key(farm_database, ["models:read"])
    _signed_in(console, "#/models", key)
    page = console.page
    page.wait_for_selector("main table[aria-label=Models] .badge.s-ready")
    assert page.locator("main form.upload, main input[type=file]").count() == 0
    assert page.locator("main button").count() == 0
    page.click("main a:has-text('readonly')")
    page.wait_for_selector("main article.version table")
    assert page.locator("main button, main form, main input, main textarea").count() == 0
    assert console.errors == []
