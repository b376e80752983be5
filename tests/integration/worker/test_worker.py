"""A real `inference-farm worker` process: it answers JSON jobs and refuses pickle."""

from __future__ import annotations

import subprocess

from celery.result import AsyncResult
from kombu import Connection

from inference_farm.broker.app import create_celery
from inference_farm.broker.names import CONTROL_QUEUE
from inference_farm.settings import Settings
from tests.services import wait_for


def test_worker_runs_a_job_from_the_control_queue(
    worker: subprocess.Popen, farm_settings: Settings
) -> None:
    celery = create_celery(farm_settings)
    result = celery.send_task("farm.ping", queue=CONTROL_QUEUE)
    answer = result.get(timeout=60)
    assert answer["pid"] != 0
    assert set(answer) == {"hostname", "pid"}
    assert worker.poll() is None


def test_worker_refuses_a_pickled_message_and_keeps_serving(
    worker: subprocess.Popen, farm_settings: Settings
) -> None:
    celery = create_celery(farm_settings)
    assert celery.send_task("farm.ping", queue=CONTROL_QUEUE).get(timeout=60)
    # Publish a pickled task straight through kombu, as a hostile client could.
    with Connection(farm_settings.broker_url) as connection:
        producer = connection.Producer(serializer="pickle")
        producer.publish(
            [[], {}, {}],
            routing_key=CONTROL_QUEUE,
            headers={"task": "farm.ping", "id": "pickled-1", "lang": "py"},
        )
    log = worker.log_path  # type: ignore[attr-defined]
    refused = b"Refusing to deserialize untrusted content of type pickle"
    assert wait_for(lambda: refused in log.read_bytes(), timeout=30)
    assert AsyncResult("pickled-1", app=celery).state == "PENDING"
    assert celery.send_task("farm.ping", queue=CONTROL_QUEUE).get(timeout=30)
    assert worker.poll() is None
