"""The console's page and static files, and what each key may see of the event stream."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from flask.testing import FlaskClient

from inference_farm.api.console import routes
from inference_farm.api.console.snapshot import for_key
from inference_farm.api.console.stream import encode, visible

SNAPSHOT = {"at": 1.0, "ready": True, "checks": {}, "workers": [], "queues": {}, "jobs": {},
            "api": {}}  # fmt: skip


def test_the_page_needs_no_key_and_sends_strict_headers(client: FlaskClient) -> None:
    assert client.get("/console").status_code == 308
    response = client.get("/console/")
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == routes.CSP
    assert "'unsafe-inline'" not in routes.CSP and "'unsafe-eval'" not in routes.CSP
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-cache"
    assert f"/console/static/{routes.BUNDLE}/js/app.js" in response.get_data(as_text=True)


def test_static_files_are_served_for_this_bundle_only(client: FlaskClient) -> None:
    good = client.get(f"/console/static/{routes.BUNDLE}/js/app.js")
    assert good.status_code == 200 and "immutable" in good.headers["Cache-Control"]
    assert good.headers["Content-Security-Policy"] == routes.CSP
    assert client.get("/console/static/0123456789abcdef/js/app.js").status_code == 404
    assert client.get(f"/console/static/{routes.BUNDLE}/../routes.py").status_code == 404
    assert client.get(f"/console/static/{routes.BUNDLE}/js/none.js").status_code == 404


def test_the_bundle_hash_follows_every_file(tmp_path: Path) -> None:
    (tmp_path / "a.js").write_text("one")
    before = routes.bundle_hash(tmp_path)
    assert routes.bundle_hash(tmp_path) == before
    (tmp_path / "a.js").write_text("two")
    assert routes.bundle_hash(tmp_path) != before


def test_no_static_file_builds_html_from_strings() -> None:
    sinks = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
             "new Function")  # fmt: skip
    for path in routes.STATIC.rglob("*.js"):
        text = path.read_text()
        assert not [s for s in sinks if s in text], path.name


def _key(scopes: list[str], key_id: int = 7) -> SimpleNamespace:
    return SimpleNamespace(id=key_id, scopes=scopes)


@pytest.mark.parametrize(
    ("scopes", "parts"),
    [
        (["infer"], {"at", "ready", "checks"}),
        (["models:read"], {"at", "ready", "checks", "workers", "queues"}),
        (["metrics"], {"at", "ready", "checks", "api"}),
        (["admin"], set(SNAPSHOT)),
    ],
)
def test_a_snapshot_carries_the_parts_a_keys_scopes_allow(scopes: list[str], parts: set) -> None:
    assert set(for_key(SNAPSHOT, scopes)) == parts
    assert set(visible(_key(scopes), "snapshot", SNAPSHOT)) == parts


def test_changes_go_to_the_keys_that_may_see_them() -> None:
    version = {"type": "version", "model": "m", "version": "1.0.0", "status": "ready"}
    mine = {"type": "job", "id": "a", "model": "m", "status": "succeeded", "owner": 7}
    theirs = {**mine, "id": "b", "owner": 8}
    batch = [version, mine, theirs]
    assert visible(_key(["jobs"]), "change", batch) == [{k: v for k, v in mine.items()
                                                         if k != "owner"}]  # fmt: skip
    assert visible(_key(["models:read"]), "change", batch) == [version]
    assert [c.get("id") for c in visible(_key(["admin"]), "change", batch)] == [None, "a", "b"]
    assert visible(_key(["infer"]), "change", batch) is None
    assert all("owner" not in c for c in visible(_key(["admin"]), "change", batch))


def test_an_event_is_one_sse_block() -> None:
    assert encode("hello", {"a": "<b>"}) == b'event: hello\ndata: {"a":"<b>"}\n\n'
