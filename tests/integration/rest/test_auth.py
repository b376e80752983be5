"""Every route declares its scope; keys are checked on each: 401, 403, 429, and ownership."""

from __future__ import annotations

import datetime as dt
import re
import subprocess
import sys

import pytest
from flask import Flask
from flask.testing import FlaskClient

from inference_farm.api import create_app
from inference_farm.api.auth import ANY_KEY, OPEN, required_scope
from inference_farm.registry import Database
from inference_farm.registry.db import utcnow
from inference_farm.settings import Settings
from tests import onnx_models
from tests.integration.helpers import (
    authorized,
    model_bytes,
    new_admin_key,
    new_key,
    settled,
    upload,
)

# The console's page and static files hold no data: every figure comes from keyed routes.
OPEN_PATHS = {"/v2", "/v2/health/live", "/v2/health/ready", "/openapi.json", "/docs",
              "/console", "/console/", "/console/static/b/m"}  # fmt: skip
VALUES = {"name": "m", "version": "1.0.0", "job_id": "j", "batch_id": "b", "key_id": "1",
          "bundle": "b"}  # fmt: skip


def _routes(app: Flask) -> list[tuple[str, str, str | None]]:
    """(method, concrete path, scope) for every route of the app."""
    found = []
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: VALUES[m.group(1)], rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            found.append((method, path, required_scope(app, rule.endpoint, method)))
    return found


def test_every_route_declares_a_scope_and_only_health_and_docs_are_open(
    farm_settings: Settings,
) -> None:
    routes = _routes(create_app(farm_settings))
    assert [r for r in routes if r[2] is None] == []
    assert {path for _m, path, scope in routes if scope == OPEN} == OPEN_PATHS


def test_every_protected_route_refuses_bad_keys(farm_settings: Settings) -> None:
    app = create_app(farm_settings)
    url = farm_settings.effective_database_url
    revoked, revoked_id = new_key(url, ["admin"])
    expired, _ = new_key(url, ["admin"], expires_at=utcnow() - dt.timedelta(seconds=1))
    database = Database(url)
    from inference_farm.registry.models import ApiKey

    session = database.session()
    session.get(ApiKey, revoked_id).revoked_at = utcnow()
    session.commit()
    database.remove()
    client = app.test_client()
    for method, path, scope in _routes(app):
        if scope == OPEN:
            continue
        for header in (None, "Basic abc", "Bearer ifk_nope_nope", f"Bearer {revoked}",
                       f"Bearer {expired}"):  # fmt: skip
            headers = {"Authorization": header} if header else {}
            response = client.open(path, method=method, headers=headers)
            assert response.status_code == 401, (method, path, header, response.get_json())
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
        if scope == ANY_KEY:  # GET /v1/keys/me: every live key may read itself
            continue
        other = next(s for s in ("jobs", "infer") if s != scope)
        weak, _ = new_key(url, [other])
        response = client.open(path, method=method, headers={"Authorization": f"Bearer {weak}"})
        assert response.status_code == 403, (method, path, response.get_json())


def test_model_allowlist_hides_other_models(api: FlaskClient, farm_settings: Settings) -> None:
    url = farm_settings.effective_database_url
    only_a, _ = new_key(url, ["models:read", "infer", "jobs"], models=["a"])
    client = authorized(api.application, only_a)
    # 403 whether or not the model exists: the key learns nothing about other models.
    assert client.get("/v2/models/b").status_code == 403
    assert client.get("/v2/models/ghost").status_code == 403
    assert client.get("/v2/models/a").status_code == 404
    body = {"model": "b", "inputs": []}
    assert client.post("/v1/jobs", json=body).status_code == 403


def test_rate_limit_gives_429_with_retry_after(farm_settings: Settings) -> None:
    url = farm_settings.effective_database_url
    key, _ = new_key(url, ["models:read"], rate_per_second=1.0, burst=2)
    client = authorized(create_app(farm_settings), key)
    statuses = [client.post("/v2/repository/index").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    limited = client.post("/v2/repository/index")
    assert int(limited.headers["Retry-After"]) >= 1
    assert "rate limit" in limited.get_json()["error"]


def test_keys_see_only_their_own_jobs(
    api: FlaskClient, farm_settings: Settings, worker: subprocess.Popen
) -> None:
    assert upload(api, "tiny", model_bytes(onnx_models.tiny_mlp())).status_code == 202
    assert settled(api, "tiny", "1.0.0")["status"] == "ready"
    url = farm_settings.effective_database_url
    alice = authorized(api.application, new_key(url, ["jobs"])[0])
    bob = authorized(api.application, new_key(url, ["jobs"], max_queued_jobs=1)[0])
    job = {"model": "tiny", "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                                        "data": [1, 2, 3, 4]}]}  # fmt: skip
    job_id = alice.post("/v1/jobs", json=job).get_json()["job_id"]
    assert bob.get(f"/v1/jobs/{job_id}").status_code == 404
    assert bob.delete(f"/v1/jobs/{job_id}").status_code == 404
    assert bob.get("/v1/jobs").get_json()["total"] == 0
    assert alice.get(f"/v1/jobs/{job_id}").status_code == 200
    assert api.get(f"/v1/jobs/{job_id}").status_code == 200  # admin sees all
    assert alice.get("/v1/jobs").get_json()["total"] == 1
    capped = bob.post("/v1/jobs", json={"requests": [job, job]})
    assert capped.status_code == 429 and "at most 1" in capped.get_json()["error"]


def test_keys_api_creates_lists_and_revokes(api: FlaskClient) -> None:
    created = api.post("/v1/keys", json={"name": "ci", "scopes": ["models:read"]})
    assert created.status_code == 201
    secret = created.get_json()["secret"]
    listed = api.get("/v1/keys").get_json()
    assert all("secret" not in key and "secret_hash" not in key for key in listed)
    assert secret not in str(listed)
    client = authorized(api.application, secret)
    assert client.get("/v1/models").status_code == 200
    assert client.get("/v1/keys").status_code == 403
    key_id = created.get_json()["id"]
    assert api.delete(f"/v1/keys/{key_id}").get_json()["revoked_at"] is not None
    assert client.get("/v1/models").status_code == 401
    bad = api.post("/v1/keys", json={"name": "x", "scopes": ["root"]})
    assert bad.status_code == 422


def test_cli_keys_list_and_revoke(farm_env: dict[str, str]) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "inference_farm", "keys", *args],
                              env=farm_env, capture_output=True, text=True, timeout=60)  # fmt: skip

    secret = cli("create", "--name", "ops", "--scope", "infer").stdout.strip()
    listed = cli("list")
    assert listed.returncode == 0 and "ops" in listed.stdout
    assert secret not in listed.stdout
    key_id = listed.stdout.split()[0]
    assert cli("revoke", key_id).returncode == 0
    assert "revoked" in cli("list").stdout
    assert cli("revoke", "99999").returncode == 5


def test_refused_keys_are_logged_masked(
    farm_settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    secret = new_admin_key(farm_settings.effective_database_url)
    forged = secret[:-6] + "AAAAAA"
    app_client = create_app(farm_settings).test_client()
    with caplog.at_level("INFO", logger="inference_farm.api.auth"):
        response = app_client.get("/v1/models", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401
    assert forged not in caplog.text and forged not in response.get_data(as_text=True)
    assert forged[:12] in caplog.text  # the prefix identifies it
