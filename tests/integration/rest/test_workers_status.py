"""GET /v1/workers and `inference-farm status` against a real API and worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from flask.testing import FlaskClient

from tests import onnx_models
from tests.integration.conftest import start_worker
from tests.integration.helpers import model_bytes, ready_version, settled, upload
from tests.services import stop_group, wait_for


def test_workers_list_queues_device_and_loaded_sessions(
    api: FlaskClient, worker: subprocess.Popen
) -> None:
    assert upload(api, "tiny", model_bytes(onnx_models.tiny_mlp())).status_code == 202
    assert settled(api, "tiny", "1.0.0")["status"] == "ready"
    assert api.post("/v2/repository/models/tiny/load").status_code == 200

    def listed() -> list:
        return api.get("/v1/workers").get_json()["workers"]

    assert wait_for(lambda: len(listed()) == 1, timeout=10)
    [one] = listed()
    assert one["device"] == "cpu"
    assert {q["name"] for q in one["queues"]} == {"farm.control", "farm.model.tiny"}
    assert all(q["depth"] == 0 for q in one["queues"])
    assert [(s["name"], s["version"]) for s in one["sessions"]] == [("tiny", "1.0.0")]


def test_status_shows_the_farm_at_a_glance(
    api: FlaskClient, api_url: str, admin_key: str, worker: subprocess.Popen
) -> None:
    assert upload(api, "tiny", model_bytes(onnx_models.tiny_mlp())).status_code == 202
    assert settled(api, "tiny", "1.0.0")["status"] == "ready"
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_FARM_")}
    env.update(INFERENCE_FARM_URL=api_url, INFERENCE_FARM_API_KEY=admin_key)

    def status(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "inference_farm", "status", *args],
                              env=env, capture_output=True, text=True, timeout=60)  # fmt: skip

    assert wait_for(lambda: json.loads(status("--json").stdout)["workers"], timeout=15)
    view = json.loads(status("--json").stdout)
    assert view["health"]["ready"] is True
    assert [m["name"] for m in view["models"]] == ["tiny"]
    text = status()
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("farm: ready")
    assert "tiny: serving 1.0.0" in text.stdout


def test_an_all_models_worker_picks_up_a_model_whose_announcement_it_missed(
    api: FlaskClient, farm_env: dict[str, str], tmp_path: Path
) -> None:
    def queues() -> set[str]:
        workers = api.get("/v1/workers").get_json()["workers"]
        return {q["name"] for one in workers for q in one["queues"]}

    env = {**farm_env, "INFERENCE_FARM_WORKER_RESYNC_SECONDS": "1"}
    worker = start_worker(env, tmp_path / "worker.log")
    try:
        assert wait_for(lambda: "farm.control" in queues(), timeout=60)
        # Registered straight in the registry: no announcement reaches the worker.
        ready_version(env["INFERENCE_FARM_DATABASE_URL"], "unannounced")
        assert wait_for(lambda: "farm.model.unannounced" in queues(), timeout=30)
    finally:
        stop_group(worker)
