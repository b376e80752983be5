"""GET /v1/keys/me through the real API, the client and the CLI: any live key reads itself."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from typing import Any

import httpx

from inference_farm.client import Client
from inference_farm.registry.db import utcnow
from inference_farm.registry.keys import hash_secret
from tests.integration.helpers import new_key

LIMITS = {"rate_per_second": 2.5, "burst": 7, "max_queued_jobs": 3}


def _keys_cli(api_url: str, key: str, *args: str) -> subprocess.CompletedProcess:
    """`inference-farm keys ARGS` against api_url with key, as a subprocess."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_FARM_")}
    env["INFERENCE_FARM_URL"], env["INFERENCE_FARM_API_KEY"] = api_url, key
    command = [sys.executable, "-m", "inference_farm", "keys", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def _me(api_url: str, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.get(api_url + "/v1/keys/me", headers=headers, timeout=30)


def _assert_no_secret(response: httpx.Response, secret: str) -> None:
    assert secret not in response.text and hash_secret(secret) not in response.text
    assert not {"secret", "secret_hash"} & set(response.json())


def _check_admin(api_url: str, admin_key: str) -> None:
    response = _me(api_url, admin_key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["scopes"], body["models"], body["expires_at"]) == (
        "test", ["admin"], None, None
    )  # fmt: skip
    assert admin_key.split("_")[1] == body["prefix"]
    assert [body[name] for name in LIMITS] == [None, None, None]  # the farm's defaults
    _assert_no_secret(response, admin_key)


def _check_limited(api_url: str, key: str, expires: dt.datetime) -> dict[str, Any]:
    response = _me(api_url, key)  # scope infer only: no keys:admin needed to read itself
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["prefix"], body["scopes"], body["models"]) == (
        key.split("_")[1], ["infer"], ["tiny", "other"]
    )  # fmt: skip
    assert dt.datetime.fromisoformat(body["expires_at"]) == expires
    assert {name: body[name] for name in LIMITS} == LIMITS
    _assert_no_secret(response, key)
    return body


def test_keys_me_shows_only_the_caller_through_api_client_and_cli(
    api_url: str, admin_key: str, farm_database: str
) -> None:
    expires = (utcnow() + dt.timedelta(days=3)).replace(microsecond=0)
    limited, limited_id = new_key(
        farm_database, ["infer"], models=["tiny", "other"], expires_at=expires, **LIMITS
    )
    _check_admin(api_url, admin_key)
    body = _check_limited(api_url, limited, expires)

    with Client(api_url, limited) as client:
        assert client.keys.me() == body
    as_json = _keys_cli(api_url, limited, "me", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == body
    text = _keys_cli(api_url, limited, "me")
    assert text.returncode == 0, text.stderr
    assert "scopes\tinfer\n" in text.stdout and "models\ttiny,other\n" in text.stdout
    assert "max_queued_jobs\t3\n" in text.stdout and limited not in text.stdout

    assert _me(api_url, None).status_code == 401
    revoked = httpx.delete(
        f"{api_url}/v1/keys/{limited_id}", headers={"Authorization": f"Bearer {admin_key}"}
    )
    assert revoked.status_code == 200, revoked.text
    assert _me(api_url, limited).status_code == 401
    refused = _keys_cli(api_url, limited, "me")
    assert refused.returncode == 6 and "revoked" in refused.stderr, refused.stderr
