"""A real worker and messages no API of this release sends: malformed jobs and jobs of a
newer message version are answered with the reason, never run, and the worker goes on."""

from __future__ import annotations

import subprocess

import orjson
import redis
from flask.testing import FlaskClient

from inference_farm.broker.app import create_celery
from inference_farm.broker.names import INFER_BATCH_TASK, INFER_TASK, model_queue
from inference_farm.protocol import messages
from inference_farm.settings import Settings
from tests import onnx_models
from tests.integration.helpers import model_bytes, settled, upload

X = {"datatype": "FP32", "shape": [1, 4], "b64": "AACAPwAAgD8AAIA/AACAPw=="}


def test_malformed_and_newer_jobs_are_answered_and_the_worker_goes_on(
    api: FlaskClient, worker: subprocess.Popen, farm_settings: Settings
) -> None:
    assert upload(api, "tiny", model_bytes(onnx_models.tiny_mlp())).status_code == 202
    assert settled(api, "tiny", "1.0.0")["status"] == "ready"
    celery, queue = create_celery(farm_settings), model_queue("tiny")
    good = {"model": "tiny", "version": "1.0.0", "inputs": {"x": X}}
    cases = {
        "no-version": {"model": "tiny", "inputs": {"x": X}},
        "inputs-not-a-mapping": {**good, "inputs": [X]},
        "newer": {**good, "v": messages.VERSION + 1},
    }
    for case, payload in cases.items():
        answer = celery.send_task(INFER_TASK, args=[payload], queue=queue).get(timeout=60)
        assert (answer["ok"], answer["status"]) == (False, 400), (case, answer)
    assert (
        "missing required field `version`"
        in celery.send_task(INFER_TASK, args=[cases["no-version"]], queue=queue).get(timeout=60)[
            "error"
        ]
    )

    inbox = "farm:replies:test-messages"
    batch = {"model": "tiny", "version": "1.0.0", "groups": "not a list", "reply_to": inbox}
    celery.send_task(INFER_BATCH_TASK, args=[batch], queue=queue)
    pushed = redis.Redis.from_url(farm_settings.broker_url).blpop([inbox], timeout=60)
    assert pushed is not None, "no reply within 60 s"
    reply = messages.decode(messages.ReplyMessage, orjson.loads(pushed[1])).reply
    assert (reply.ok, reply.status) == (False, 400) and "groups" in str(reply.error)

    answer = celery.send_task(INFER_TASK, args=[good], queue=queue).get(timeout=60)
    assert answer["ok"] is True and answer["outputs"]["y"]["shape"] == [1, 2]
    assert worker.poll() is None
