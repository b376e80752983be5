"""The console's browser tests: Debian's Chromium driven by Playwright, against a real
`inference-farm api` and a real worker. Where no browser is installed they skip, except
under CI, where they must run."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.integration.conftest import _missing

CHROMIUM = os.environ.get("INFERENCE_FARM_TEST_CHROMIUM", "/usr/bin/chromium")
WAIT_MS = 30_000


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """One headless Chromium for these tests; Playwright's sync API keeps an event loop in
    this thread while it runs, so it must stop before any later test calls asyncio.run()."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _missing("Playwright", str(exc))
    if not (os.access(CHROMIUM, os.X_OK) or shutil.which(CHROMIUM)):
        _missing("Chromium", f"{CHROMIUM} not found: apt-get install chromium")
    with sync_playwright() as playwright:
        # --no-sandbox: Chromium's sandbox refuses to run as root, as CI does.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield launched
        launched.close()


@dataclass
class Console:
    """A signed-out browser page on the console of a real API, and what it logged."""

    url: str
    admin_key: str
    page: Any
    errors: list[str] = field(default_factory=list)

    def open(self, hash_: str = "") -> None:
        """Load the console (at a page's fragment)."""
        self.page.goto(f"{self.url}/console/{hash_}")

    def sign_in(self, key: str | None = None) -> None:
        """Sign in with key (the admin key) and wait for the navigation."""
        self.page.fill("#key", key or self.admin_key)
        self.page.click("form.signin button[type=submit]")
        self.page.wait_for_selector("#nav a", timeout=WAIT_MS)

    def go(self, page_name: str) -> None:
        """Open one page through the navigation."""
        self.page.click(f"#nav a[data-page={page_name}]")
        self.page.wait_for_selector(f"#nav a[data-page={page_name}][aria-current=page]")


def _watch(page: Any, errors: list[str]) -> None:
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    page.on("dialog", lambda d: (errors.append(f"dialog opened: {d.message}"), d.dismiss()))
    page.set_default_timeout(WAIT_MS)


@pytest.fixture
def console(
    browser: Any, api_url: str, admin_key: str, worker: subprocess.Popen
) -> Iterator[Console]:
    """A fresh browser context on the console of a real API with a real worker."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    found = Console(api_url, admin_key, page)
    _watch(page, found.errors)
    yield found
    context.close()


def axe_violations(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]


@pytest.fixture
def farm_env(farm_env: dict[str, str]) -> dict[str, str]:
    """The test farm, with snapshots (and key checks) every half second: tests wait less."""
    return {**farm_env, "INFERENCE_FARM_EVENTS_INTERVAL": "0.5"}
