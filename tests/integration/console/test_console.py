"""The console in a real browser: signing in, its security headers, and a clean load."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.console.conftest import Console, axe_violations
from tests.integration.helpers import new_key

pytestmark = pytest.mark.integration


def test_a_wrong_key_is_refused_with_a_message(console: Console) -> None:
    console.open()
    console.page.fill("#key", "ifk_wrong_key")
    console.page.click("form.signin button[type=submit]")
    error = console.page.wait_for_selector("form.signin .error:has-text('Signing in failed')")
    assert "unknown, revoked or expired" in error.inner_text()
    assert console.page.evaluate("sessionStorage.length") == 0  # a refused key is not kept


def test_signing_in_keeps_the_key_in_session_storage_only(console: Console) -> None:
    console.open()
    console.sign_in()
    console.page.wait_for_selector(".link-state:has-text('live')")
    stored = console.page.evaluate("Object.values(sessionStorage)")
    assert stored == [console.admin_key]
    assert console.page.context.cookies() == []
    assert console.admin_key not in console.page.url
    assert console.errors == []
    console.page.click(".who button:has-text('Sign out')")
    console.page.wait_for_selector("form.signin")
    assert console.page.evaluate("sessionStorage.length") == 0


def test_the_page_has_a_strict_policy_and_cacheable_assets(console: Console) -> None:
    response = httpx.get(console.url + "/console/", timeout=10)
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "frame-ancestors 'none'" in csp and response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "<script>" not in response.text  # no inline script: only modules from self
    script = response.text.split('<script type="module" src="')[1].split('"')[0]
    asset = httpx.get(console.url + script, timeout=10)
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
    assert "javascript" in asset.headers["content-type"]
    stale = script.replace(script.split("/")[3], "0" * 16)
    assert httpx.get(console.url + stale, timeout=10).status_code == 404
    escape = console.url + "/console/static/" + script.split("/")[3] + "/../routes.py"
    assert httpx.get(escape, timeout=10).status_code == 404


def test_a_key_without_keys_admin_sees_no_keys_page(console: Console, farm_database: str) -> None:
    key, _ = new_key(farm_database, ["models:read", "infer"])
    console.open()
    console.sign_in(key)
    pages = console.page.eval_on_selector_all("#nav a", "links => links.map(a => a.dataset.page)")
    assert "keys" not in pages and "models" in pages and "jobs" not in pages
    console.open("#/keys")
    console.page.wait_for_selector("main h1:has-text('Not available')")
    response = httpx.get(
        console.url + "/v1/keys", headers={"Authorization": f"Bearer {key}"}, timeout=10
    )
    assert response.status_code == 403 and "keys:admin" in response.json()["message"]
    assert console.errors == []


def test_the_sign_in_page_passes_axe(console: Console) -> None:
    console.open()
    console.page.wait_for_selector("form.signin")
    assert axe_violations(console.page) == []


def test_a_console_whose_key_is_revoked_signs_out_with_a_message(
    console: Console, farm_database: str
) -> None:
    key, key_id = new_key(farm_database, ["models:read"])
    console.open()
    console.sign_in(key)
    console.page.wait_for_selector(".link-state:has-text('live')")
    headers = {"Authorization": f"Bearer {console.admin_key}"}
    revoked = httpx.delete(f"{console.url}/v1/keys/{key_id}", headers=headers, timeout=10)
    assert revoked.status_code in (200, 204), revoked.text
    error = console.page.wait_for_selector("form.signin .error:has-text('Signed out')")
    assert "revoked" in error.inner_text()
    assert console.page.evaluate("sessionStorage.length") == 0
