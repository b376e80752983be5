"""Messages the API publishes from its event loop are the ones kombu itself would write."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess

import msgpack
import numpy as np
import onnxruntime as ort
import redis
from flask.testing import FlaskClient

from inference_farm.broker.app import create_celery
from inference_farm.broker.connections import async_redis_client
from inference_farm.broker.names import model_queue
from inference_farm.broker.publisher import Publisher, envelope, priority_key
from inference_farm.protocol.packing import pack, unpack
from inference_farm.settings import Settings
from tests import onnx_models
from tests.integration.helpers import model_bytes, settled, upload


def _pushed(client: redis.Redis, key: str) -> dict:
    raw = client.lpop(key)
    assert raw is not None, f"nothing on {key}"
    return json.loads(raw)


def test_the_envelope_is_kombus_own(farm_settings: Settings) -> None:
    celery = create_celery(farm_settings)
    client = redis.Redis.from_url(farm_settings.broker_url)
    payload = {"model": "m", "requests": [1, 2]}
    options = {"argsrepr": "(m)", "kwargsrepr": "{}", "ignore_result": True}
    for priority, serializer in ((0, "json"), (4, "msgpack"), (9, "json")):
        celery.send_task(
            "farm.infer_batch", args=[payload], queue="farm.model.m", task_id="theirs",
            priority=priority, serializer=serializer, **options,
        )  # fmt: skip
        theirs = _pushed(client, priority_key("farm.model.m", priority))
        raw = envelope(
            celery, "farm.model.m", "farm.infer_batch", [payload], "ours", priority,
            serializer=serializer, **options,
        )  # fmt: skip
        ours = json.loads(raw)
        assert set(ours) == set(theirs)
        for field in ("content-type", "content-encoding"):
            assert ours[field] == theirs[field], field
        assert set(ours["headers"]) == set(theirs["headers"])
        # kombu adds a per-message expiration that its Redis transport never reads.
        assert set(theirs["properties"]) - set(ours["properties"]) <= {"expiration"}
        for field in ("priority", "delivery_info", "body_encoding", "delivery_mode"):
            assert ours["properties"][field] == theirs["properties"][field], field
        for field in ("task", "ignore_result", "argsrepr", "lang"):
            assert ours["headers"][field] == theirs["headers"][field], field
        assert ours["headers"]["id"] == "ours" and ours["properties"]["correlation_id"] == "ours"
        loads = json.loads if serializer == "json" else msgpack.unpackb
        body = loads(base64.b64decode(ours["body"]))
        assert body == loads(base64.b64decode(theirs["body"]))
        assert list(body[0]) == [payload]


def test_a_worker_runs_what_the_publisher_sends(
    api: FlaskClient, worker: subprocess.Popen, farm_settings: Settings
) -> None:
    content = model_bytes(onnx_models.tiny_mlp())
    assert upload(api, "tiny", content).status_code == 202
    assert settled(api, "tiny", "1.0.0")["status"] == "ready"
    x = np.ones((3, 4), np.float32)
    group = {"inputs": {"x": pack(x, "FP32", raw=True)}, "outputs": None, "rows": [1, 2],
             "requests": [{"deadline": None}, {"deadline": None}]}  # fmt: skip
    inbox = "farm:replies:published"
    payload = {"model": "tiny", "version": "1.0.0", "reply_to": inbox, "groups": [group]}

    async def send() -> None:
        client = async_redis_client(farm_settings.broker_url or "", 5)
        await Publisher(create_celery(farm_settings), client).publish(
            model_queue("tiny"), "farm.infer_batch", payload, priority=0, task_id="published",
            ignore_result=True, argsrepr="()", kwargsrepr="{}", serializer="msgpack",
        )  # fmt: skip
        await client.aclose()

    asyncio.run(send())
    pushed = redis.Redis.from_url(farm_settings.broker_url).blpop([inbox], timeout=60)
    assert pushed is not None, "no reply within 60 s"
    message = json.loads(pushed[1])
    assert message["task_id"] == "published"
    first, second = message["reply"]["replies"]
    want = ort.InferenceSession(content, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(unpack(first["outputs"]["y"]), want[:1], rtol=1e-6)
    np.testing.assert_allclose(unpack(second["outputs"]["y"]), want[1:], rtol=1e-6)
