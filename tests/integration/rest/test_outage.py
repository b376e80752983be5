"""A broker outage: new requests get 503 at once, and service comes back with Redis."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference_farm.cli.embedded_redis import free_port, redis_binary, redis_command, wait_for_redis
from inference_farm.settings import load_settings
from tests import onnx_models
from tests.integration.conftest import running_api, start_worker
from tests.integration.helpers import (
    LiveClient,
    client_for,
    model_bytes,
    new_admin_key,
    settled,
    upload,
)
from tests.services import stop_group, wait_for

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


class Redis:
    """A private Redis that the test can stop and start again on the same port."""

    def __init__(self, folder: Path) -> None:
        self.port, self.folder = free_port(), folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        argv = redis_command(redis_binary(), self.port, self.folder)
        self.process = subprocess.Popen(argv, start_new_session=True)
        wait_for_redis(self.url, self.process)

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)
            self.process = None


@pytest.fixture
def private_redis() -> Iterator[Redis]:
    with tempfile.TemporaryDirectory(prefix="farm-outage-") as folder:
        server = Redis(Path(folder))
        server.start()
        yield server
        server.stop()


def _infer(live: LiveClient) -> int:
    return live.post("/v2/models/tiny/infer", json=BODY).status_code


def test_outage_gives_503_and_service_recovers(
    private_redis: Redis, farm_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**farm_env, "INFERENCE_FARM_BROKER_URL": private_redis.url}
    api = client_for(load_settings(env=env))
    worker = start_worker(env, tmp_path / "worker.log")
    key = new_admin_key(farm_env["INFERENCE_FARM_DATABASE_URL"])
    try:
        with running_api(env, tmp_path / "api.log") as url:
            live = LiveClient(url, key)
            assert upload(api, "tiny", model_bytes(onnx_models.tiny_mlp())).status_code == 202
            assert settled(api, "tiny", "1.0.0")["status"] == "ready"
            assert _infer(live) == 200

            private_redis.stop()
            refused = live.post("/v2/models/tiny/infer", json=BODY)
            # The outage's own answer (a hung request would end in the client's timeout or a 504)
            assert (refused.status_code, refused.response.headers.get("Retry-After")) == (503, "5")
            assert "the broker does not answer" in refused.get_json()["error"], refused.get_json()
            assert api.get("/v2/health/ready").status_code == 503

            private_redis.start()
            assert wait_for(lambda: _infer(live) == 200, timeout=60, interval=1.0)
            assert api.get("/v2/health/ready").status_code == 200
            assert worker.poll() is None
            live.close()
    finally:
        stop_group(worker)


def test_readiness_goes_false_with_redis_and_true_once_it_is_back(
    private_redis: Redis, farm_env: dict[str, str]
) -> None:
    env = {**farm_env, "INFERENCE_FARM_BROKER_URL": private_redis.url}
    api = client_for(load_settings(env=env))

    def ready() -> tuple[int, dict]:
        response = api.get("/v2/health/ready")
        return response.status_code, response.get_json()

    assert ready() == (200, {"ready": True, "checks": {"database": "ok", "broker": "ok"}})
    private_redis.stop()
    status, body = ready()
    assert (status, body["ready"], body["checks"]["database"]) == (503, False, "ok")
    assert body["checks"]["broker"].startswith(f"cannot reach {private_redis.url}")
    private_redis.start()
    assert wait_for(lambda: ready()[0] == 200, timeout=30, interval=0.5)
    assert ready()[1]["ready"] is True
