"""Load and unload are broadcast to real workers, which warm or evict the session."""

from __future__ import annotations

import subprocess
from typing import Any

import httpx
from flask.testing import FlaskClient

from inference_farm.broker import control
from inference_farm.broker.app import create_celery
from inference_farm.settings import Settings
from tests import onnx_models
from tests.integration.helpers import model_bytes, ready_version, settled, upload


def _entries(settings: Settings) -> list[dict[str, Any]]:
    """The sessions the test's one worker holds."""
    celery = create_celery(settings)
    replies = control.call(celery, "broadcast", "farm_cache", reply=True, timeout=5, limit=1)
    assert len(replies) == 1, "the worker did not answer"
    return [entry for reply in replies for answer in reply.values() for entry in answer["entries"]]


def test_load_warms_and_unload_evicts_on_the_worker(
    api: FlaskClient,
    worker: subprocess.Popen,
    farm_settings: Settings,
) -> None:
    assert upload(api, "warm", model_bytes(onnx_models.tiny_mlp())).status_code == 202
    assert settled(api, "warm", "1.0.0")["status"] == "ready"
    assert _entries(farm_settings) == []  # lazy: nothing loaded by validation

    loaded = api.post("/v2/repository/models/warm/load")
    assert loaded.status_code == 200, loaded.get_json()
    assert [(e["name"], e["version"]) for e in _entries(farm_settings)] == [("warm", "1.0.0")]

    assert api.post("/v2/repository/models/warm/unload").status_code == 200
    assert wait_until_empty(farm_settings)


def wait_until_empty(settings: Settings) -> bool:
    """True once the worker reports no loaded session."""
    from tests.services import wait_for

    return wait_for(lambda: _entries(settings) == [], timeout=10)


def test_deleting_a_version_evicts_it(
    api: FlaskClient,
    worker: subprocess.Popen,
    farm_settings: Settings,
) -> None:
    upload(api, "gone", model_bytes(onnx_models.tiny_mlp()))
    settled(api, "gone", "1.0.0")
    assert api.post("/v2/repository/models/gone/load").status_code == 200
    assert api.delete("/v1/models/gone/versions/1.0.0").status_code == 200
    assert wait_until_empty(farm_settings)


def test_load_of_unknown_or_unready_models(api: FlaskClient, worker: subprocess.Popen) -> None:
    missing = api.post("/v2/repository/models/ghost/load")
    assert missing.status_code == 404
    assert missing.get_json() == {"error": "model 'ghost' not found"}
    upload(api, "bad", b"garbage" * 20)
    assert settled(api, "bad", "1.0.0")["status"] == "failed"
    refused = api.post("/v2/repository/models/bad/load")
    assert refused.status_code == 404
    assert "no ready version" in refused.get_json()["error"]


def test_load_with_no_worker_alive_is_503_at_once(
    api_url: str, admin_key: str, farm_database: str
) -> None:
    ready_version(farm_database, "orphan")  # ready in the registry; no worker runs anywhere
    headers = {"Authorization": f"Bearer {admin_key}"}
    # Well under the 60 s a load waits for workers' answers: no answer is owed by nobody.
    answer = httpx.post(f"{api_url}/v2/repository/models/orphan/load", headers=headers, timeout=15)
    assert answer.status_code == 503, answer.text
    assert answer.json() == {
        "error": "no live worker serves model 'orphan' (queue farm.model.orphan)"
    }
    assert answer.headers["retry-after"] == "5"
