"""Ready means servable: the moment a version reads ready, the next infer succeeds, no retry."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import numpy as np
import redis
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from inference_farm.broker import heartbeat
from inference_farm.broker.app import create_celery
from inference_farm.registry import Database, catalog
from inference_farm.settings import Settings
from inference_farm.worker import resync as queue_sync
from tests import onnx_models
from tests.integration.conftest import running_api, start_worker
from tests.integration.helpers import Bearer
from tests.services import kill_group, wait_for

MODELS = 30


def _upload(url: str, key: str, name: str, content: bytes) -> str:
    files = {"file": ("model.onnx", content)}
    headers = {"Authorization": f"Bearer {key}"}
    response = httpx.post(f"{url}/v1/models/{name}/versions", files=files, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()["version"]


def _infer(client: triton.InferenceServerClient, name: str) -> np.ndarray:
    tensor = triton.InferInput("x", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 4), np.float32))
    return client.infer(name, [tensor]).as_numpy("y")


def test_every_model_serves_the_moment_it_is_ready(
    farm_env: dict[str, str], admin_key: str, worker: subprocess.Popen, tmp_path: Path
) -> None:
    # Two API processes: whichever one answers "ready", the other must serve at once too.
    env = {**farm_env, "INFERENCE_FARM_API_WORKERS": "2"}
    with running_api(env, tmp_path / "api.log") as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        client.register_plugin(Bearer(admin_key))
        answered, refused = 0, []
        for index in range(MODELS):
            name = f"m{index}"
            version = _upload(
                url, admin_key, name, onnx_models.tiny_mlp(seed=index).SerializeToString()
            )
            assert wait_for(lambda n=name, v=version: client.is_model_ready(n, v), 90, 0.02)
            try:
                _infer(client, name)  # once, the moment it is ready: Triton's clients never retry
                answered += 1
            except InferenceServerException as exc:
                refused.append(f"{name}: {exc}")
        assert (answered, refused) == (MODELS, [])


def test_validation_has_an_all_models_worker_take_a_queue_it_missed(
    farm_env: dict[str, str], farm_settings: Settings, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(farm_env["INFERENCE_FARM_BROKER_URL"])
    celery = create_celery(farm_settings)
    database = Database(farm_env["INFERENCE_FARM_DATABASE_URL"])
    try:
        assert queue_sync.wait_served(celery, client, "quiet", timeout=5) is False  # no worker
        # A resync this slow never runs during the test: only the validation's request can.
        env = {**farm_env, "INFERENCE_FARM_WORKER_RESYNC_SECONDS": "600"}
        process = start_worker(env, tmp_path / "worker.log")
        try:
            assert wait_for(lambda: heartbeat.serving(client, "farm.control"), 60)
            catalog.ensure_model(database.session(), "quiet")  # never announced to the worker
            assert not heartbeat.serving(client, "farm.model.quiet")
            assert queue_sync.wait_served(celery, client, "quiet", timeout=10) is True
            assert heartbeat.serving(client, "farm.model.quiet")
        finally:
            kill_group(process)
    finally:
        database.remove()
        database.engine.dispose()
        celery.close()
        client.close()
