"""The Keys page in a real browser, against a real API: a key created there works, its
secret is shown once, a revoke stops it, and key names are text."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.console.conftest import Console, axe_violations
from tests.services import wait_for

pytestmark = pytest.mark.integration
XSS = "<img src=x onerror=alert(1)>"


def _me(url: str, key: str) -> httpx.Response:
    return httpx.get(url + "/v1/keys/me", headers={"Authorization": f"Bearer {key}"}, timeout=10)


def _row(console: Console, name: str):
    page = console.page
    return page.locator(".key-list tr", has=page.get_by_text(name, exact=True))


def test_a_key_made_in_the_page_works_once_shown_and_stops_when_revoked(
    console: Console,
) -> None:
    console.open()
    console.sign_in()
    console.go("keys")
    page = console.page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.fill("#key-name", "made-in-console")
    page.check("#scope-infer")
    page.check("#scope-models-read")
    page.fill("#key-models", "tiny, other")
    page.fill("#key-expires_in_days", "7")
    page.click("form.key-form button[type=submit]")
    secret = page.inner_text("#new-secret", timeout=30_000)
    me = _me(console.url, secret)
    assert me.status_code == 200, me.text
    assert me.json()["name"] == "made-in-console"
    assert me.json()["scopes"] == ["infer", "models:read"] and me.json()["models"] == [
        "tiny",
        "other",
    ]
    page.click(".secret-box button:has-text('Copy')")
    assert page.evaluate("navigator.clipboard.readText()") == secret
    assert axe_violations(page) == []
    _row(console, "made-in-console").wait_for()
    console.go("overview")
    console.go("keys")
    _row(console, "made-in-console").wait_for()
    assert page.locator("#new-secret").count() == 0 and secret not in page.content()
    page.reload()
    _row(console, "made-in-console").wait_for()
    assert page.locator("#new-secret").count() == 0 and secret not in page.content()
    assert secret not in page.evaluate("JSON.stringify(Object.values(sessionStorage))")
    _row(console, "made-in-console").locator("button:has-text('Revoke')").click()
    page.wait_for_selector("#confirm[open]")
    assert "made-in-console" in page.inner_text("#confirm-text")
    page.click("#confirm-ok")
    _row(console, "made-in-console").locator(".badge:has-text('revoked')").wait_for()
    assert wait_for(lambda: _me(console.url, secret).status_code == 401, timeout=30)
    assert console.errors == []


def test_a_key_needs_a_scope_and_the_api_says_what_is_wrong(console: Console) -> None:
    console.open()
    console.sign_in()
    console.go("keys")
    page = console.page
    page.fill("#key-name", "no-scope")
    page.click("form.key-form button[type=submit]")
    page.wait_for_selector(".key-form .error:has-text('at least one scope')")
    page.check("#scope-jobs")
    page.fill("#key-models", "not/a/name")
    page.click("form.key-form button[type=submit]")
    page.wait_for_selector(".key-form .error:has-text('Creating the key failed')")
    assert "models" in page.inner_text(".key-form .error")
    assert page.locator("#new-secret").count() == 0


def test_a_key_name_is_rendered_as_text(console: Console) -> None:
    made = httpx.post(
        console.url + "/v1/keys", json={"name": XSS, "scopes": ["infer"]},
        headers={"Authorization": f"Bearer {console.admin_key}"}, timeout=10,
    )  # fmt: skip
    assert made.status_code == 201, made.text
    console.open()
    console.sign_in()
    console.go("keys")
    page = console.page
    row = _row(console, XSS)
    row.wait_for()
    assert page.locator("main img").count() == 0
    row.locator("button:has-text('Revoke')").click()
    page.wait_for_selector("#confirm[open]")
    assert XSS in page.inner_text("#confirm-text")
    page.click("#confirm-cancel")
    assert row.locator(".badge").inner_text() == "active"
    assert _me(console.url, made.json()["secret"]).status_code == 200
    assert axe_violations(page) == []
    assert console.errors == []  # a dialog opened would be listed here
