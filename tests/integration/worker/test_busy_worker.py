"""A worker busy with a long synchronous batch still counts as serving its model's queue."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

from flask.testing import FlaskClient

from inference_farm.api import create_app
from inference_farm.broker import control
from inference_farm.settings import Settings
from tests import onnx_models
from tests.integration.helpers import LiveClient, model_bytes, settled, upload
from tests.services import wait_for

WIDTH, LAYERS = 1024, 512  # about 7 s of work in one run: longer than the checks below
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, WIDTH], "data": [0.01] * WIDTH}]}
RECEIVED = "Task farm.infer_batch["  # Celery logs it as the consumer takes the job to run


def test_a_worker_busy_with_a_long_batch_still_serves_its_queue(
    api: FlaskClient, live: LiveClient, worker: subprocess.Popen, farm_settings: Settings
) -> None:
    model = model_bytes(onnx_models.slow_model(WIDTH, LAYERS))
    assert upload(api, "slow", model).status_code == 202
    assert settled(api, "slow", "1.0.0")["status"] == "ready"
    farm = create_app(farm_settings).extensions["farm"]
    watch = farm.queues
    assert wait_for(lambda: watch.serves("farm.model.slow"), timeout=30)

    assert api.post("/v2/repository/models/slow/load").status_code == 200

    # A sync request runs on the worker's consumer thread, which answers no broadcast
    # until the run ends: only the worker's heartbeat can say it serves the queue.
    answered: list[int] = []
    busy = threading.Thread(
        target=lambda: answered.append(live.post("/v2/models/slow/infer", json=BODY).status_code)
    )
    busy.start()
    log = Path(worker.log_path)  # type: ignore[attr-defined]
    assert wait_for(lambda: RECEIVED in log.read_text(), timeout=30), log.read_text()[-2000:]
    assert control.inspect(farm.celery, "active_queues", 1.0) == {}, "the worker answered"
    watch.refresh()
    listed = api.get("/v1/workers").get_json()["workers"]
    assert busy.is_alive(), "the run ended before the checks: make the model slower"
    assert watch.consumed("farm.model.slow")
    assert ["farm.model.slow" in {q["name"] for q in one["queues"]} for one in listed] == [True]
    busy.join(timeout=60)
    assert answered == [200]
