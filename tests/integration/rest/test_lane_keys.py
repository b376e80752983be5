"""Revoked and expired keys on the event-loop infer lane of the real API: 401 at once when the
revocation passes through it, within registry_cache_seconds when it does not, and by the
key's own expiry even while the key is cached."""

from __future__ import annotations

import datetime as dt
import subprocess
import time
from pathlib import Path

import httpx
from flask.testing import FlaskClient

from inference_farm.registry import Database
from inference_farm.registry.db import utcnow
from inference_farm.registry.keys import revoke_key
from tests import onnx_models
from tests.integration.conftest import running_api
from tests.integration.helpers import GOOD, model_bytes, new_key, ready_version, settled, upload
from tests.services import wait_for

BODY = {"inputs": [GOOD]}
CACHE_S = 2.0  # registry_cache_seconds' documented default, which the api_url server runs
REFUSED = "the API key is unknown, revoked or expired"


def _infer(url: str, key: str, model: str) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"}
    return httpx.post(f"{url}/v2/models/{model}/infer", json=BODY, headers=headers, timeout=30)


def _refused(answer: httpx.Response) -> bool:
    if answer.status_code != 401:
        return False
    assert answer.json() == {"error": REFUSED}
    assert answer.headers["www-authenticate"].startswith("Bearer")
    return True


def test_revoked_keys_are_refused_at_once_here_and_within_the_cache_bound_elsewhere(
    api: FlaskClient, worker: subprocess.Popen, api_url: str, admin_key: str, farm_database: str
) -> None:
    assert upload(api, "tiny", model_bytes(onnx_models.tiny_mlp())).status_code == 202
    assert settled(api, "tiny", "1.0.0")["status"] == "ready"
    expired, _ = new_key(farm_database, ["infer"], expires_at=utcnow() - dt.timedelta(seconds=1))
    assert _refused(_infer(api_url, expired, "tiny"))

    # Revoked through this API: its own cache is dropped, so the very next request is refused.
    here, here_id = new_key(farm_database, ["infer"])
    assert _infer(api_url, here, "tiny").status_code == 200  # now cached by the server
    admin = {"Authorization": f"Bearer {admin_key}"}
    revoked = httpx.delete(f"{api_url}/v1/keys/{here_id}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert _refused(_infer(api_url, here, "tiny"))

    # Revoked elsewhere (`inference-farm keys revoke`, another API process): the server
    # trusts its cached key for at most registry_cache_seconds, however often it is used.
    there, there_id = new_key(farm_database, ["infer"])
    assert _infer(api_url, there, "tiny").status_code == 200
    database = Database(farm_database)
    revoke_key(database.session(), there_id)
    database.remove()
    database.engine.dispose()
    revoked_at = time.monotonic()
    assert wait_for(lambda: _refused(_infer(api_url, there, "tiny")), CACHE_S + 1.5, 0.05), (
        f"still served {time.monotonic() - revoked_at:.1f}s after the revocation"
    )
    assert all(_refused(_infer(api_url, there, "tiny")) for _ in range(3))  # and stays so


def test_a_cached_key_is_refused_by_its_own_expiry(
    farm_env: dict[str, str], farm_database: str, tmp_path: Path
) -> None:
    # A cache far longer than the key's life: only the key's expiry can refuse it in time.
    env = {**farm_env, "INFERENCE_FARM_REGISTRY_CACHE_SECONDS": "60"}
    ready_version(farm_database, "tiny")  # no worker: an accepted key gets 503, not 401
    with running_api(env, tmp_path / "api.log") as url:
        key, _ = new_key(farm_database, ["infer"], expires_at=utcnow() + dt.timedelta(seconds=3))
        accepted = _infer(url, key, "tiny")
        assert accepted.status_code == 503 and "no live worker" in accepted.json()["error"]
        assert wait_for(lambda: _refused(_infer(url, key, "tiny")), timeout=10, interval=0.1)
