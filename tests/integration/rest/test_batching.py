"""Coalesced, stacked inference through a real worker: same answers, own errors, own timeouts."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import redis
from flask.testing import FlaskClient
from onnx import TensorProto, helper

from inference_farm.broker.app import create_celery
from inference_farm.broker.names import model_queue
from inference_farm.protocol.packing import pack, unpack
from inference_farm.settings import Settings
from tests import onnx_models
from tests.integration.helpers import LiveClient, batch_sizes, model_bytes, settled, upload
from tests.services import wait_for

CLIENTS = 12
WAIT_FOR_BATCH_MS = 300  # the worker waits this long to fill a batch, so requests meet


def ready(api: FlaskClient, name: str, content: bytes, **batching: Any) -> None:
    assert upload(api, name, content).status_code == 202
    assert settled(api, name, "1.0.0")["status"] == "ready"
    if batching:
        assert api.patch(f"/v1/models/{name}", json=batching).status_code == 200


def body(array: np.ndarray, **parameters: Any) -> dict:
    tensor = {"name": "x", "datatype": "FP32", "shape": list(array.shape)}
    return {"inputs": [{**tensor, "data": array.ravel().tolist()}], "parameters": parameters}


def concurrently(live: LiveClient, name: str, bodies: list[dict]) -> list[tuple[int, dict]]:
    """POST every body at once to the real API, each on its own thread."""

    def post(one: dict) -> tuple[int, dict]:
        response = live.post(f"/v2/models/{name}/infer", json=one)
        return response.status_code, response.get_json()

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(post, bodies))


def in_process(content: bytes) -> Callable[[np.ndarray], np.ndarray]:
    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    return lambda array: session.run(None, {"x": array})[0]


def output_of(answer: dict) -> np.ndarray:
    [output] = answer["outputs"]
    return np.array(output["data"], np.float32).reshape(output["shape"])


def test_batched_answers_equal_unbatched_ones(
    live: LiveClient, api: FlaskClient, worker: subprocess.Popen
) -> None:
    content = model_bytes(onnx_models.tiny_mlp(features=4, outputs=3, seed=5))
    ready(api, "tiny", content, max_queue_delay_ms=WAIT_FOR_BATCH_MS)
    rng = np.random.default_rng(11)
    arrays = [rng.standard_normal((int(rng.integers(1, 4)), 4), np.float32) for _ in range(CLIENTS)]
    answers = concurrently(live, "tiny", [body(a) for a in arrays])
    run = in_process(content)
    for array, (status, answer) in zip(arrays, answers, strict=True):
        assert status == 200, answer
        np.testing.assert_allclose(output_of(answer), run(array), rtol=1e-5, atol=1e-6)
    # Requests really ran together: the worker's job lines say so.
    assert wait_for(lambda: len(batch_sizes(worker, "tiny")) == CLIENTS, 30)
    assert max(batch_sizes(worker, "tiny")) > 1, batch_sizes(worker, "tiny")


def free_width() -> bytes:
    """x FP32 [N, M] -> y = Relu(x): requests of different widths may arrive together."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "free_width",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "M"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "M"])],
    )
    return model_bytes(onnx_models.model_of(graph))


def test_mixed_shapes_each_get_their_own_answer(
    live: LiveClient, api: FlaskClient, worker: subprocess.Popen
) -> None:
    ready(api, "widths", free_width(), max_queue_delay_ms=WAIT_FOR_BATCH_MS)
    rng = np.random.default_rng(2)
    arrays = [rng.standard_normal((1 + i % 2, 2 + i % 3), np.float32) for i in range(CLIENTS)]
    answers = concurrently(live, "widths", [body(a) for a in arrays])
    for array, (status, answer) in zip(arrays, answers, strict=True):
        assert status == 200, answer
        np.testing.assert_array_equal(output_of(answer), np.maximum(array, 0))
    assert wait_for(lambda: len(batch_sizes(worker, "widths")) == CLIENTS, 30)
    assert max(batch_sizes(worker, "widths")) > 1  # those of one width shared runs


def test_a_model_with_a_fixed_batch_dim_is_never_stacked(
    live: LiveClient, api: FlaskClient, worker: subprocess.Popen
) -> None:
    # Stacking two [3, 4] requests would feed [6, 4], which this model refuses.
    ready(api, "fixed", model_bytes(onnx_models.fixed_no_batch()), max_queue_delay_ms=100)
    arrays = [np.full((3, 4), i - 3, np.float32) for i in range(6)]
    answers = concurrently(live, "fixed", [body(a) for a in arrays])
    for array, (status, answer) in zip(arrays, answers, strict=True):
        assert status == 200, answer
        np.testing.assert_array_equal(output_of(answer), np.maximum(array, 0))
    assert wait_for(lambda: len(batch_sizes(worker, "fixed")) == len(arrays), 30)
    assert set(batch_sizes(worker, "fixed")) == {1}


def test_a_bad_request_is_refused_alone(
    live: LiveClient, api: FlaskClient, worker: subprocess.Popen
) -> None:
    content = model_bytes(onnx_models.tiny_mlp())
    ready(api, "tiny", content, max_queue_delay_ms=WAIT_FOR_BATCH_MS)
    good = [np.full((1, 4), i, np.float32) for i in range(5)]
    bad = body(good[0]) | {"outputs": [{"name": "nope"}]}
    answers = concurrently(live, "tiny", [body(a) for a in good] + [bad])
    run = in_process(content)
    for array, (status, answer) in zip(good, answers[:-1], strict=True):
        assert status == 200, answer
        np.testing.assert_allclose(output_of(answer), run(array), rtol=1e-6)
    status, answer = answers[-1]
    assert status == 400 and "nope" in answer["error"], answer


def test_a_request_that_fails_on_the_worker_fails_alone(
    api: FlaskClient, worker: subprocess.Popen, farm_settings: Settings
) -> None:
    content = model_bytes(onnx_models.tiny_mlp())
    ready(api, "tiny", content, max_queue_delay_ms=WAIT_FOR_BATCH_MS)
    x = np.ones((2, 4), np.float32)
    good = {"inputs": {"x": pack(x, "FP32")}, "outputs": None, "deadline": None}
    requests = [good, {**good, "outputs": ["nope"]}, {**good, "inputs": {"x": {"b64": "?"}}}, good]
    inbox = "farm:replies:test"
    payload = {"model": "tiny", "version": "1.0.0", "requests": requests, "reply_to": inbox}
    celery = create_celery(farm_settings)
    sent = celery.send_task("farm.infer_batch", args=[payload], queue=model_queue("tiny"))
    pushed = redis.Redis.from_url(farm_settings.broker_url).blpop([inbox], timeout=60)
    assert pushed is not None, "no reply within 60 s"
    message = json.loads(pushed[1])
    assert message["task_id"] == sent.id
    reply = message["reply"]
    assert reply["ok"] is True and len(reply["replies"]) == 4
    first, unknown, garbled, last = reply["replies"]
    assert (unknown["ok"], unknown["status"]) == (False, 400) and "nope" in unknown["error"]
    assert (garbled["ok"], garbled["status"]) == (False, 400), garbled
    for answer in (first, last):
        assert answer["ok"] is True and answer["batch_size"] == 2, answer
        np.testing.assert_allclose(unpack(answer["outputs"]["y"]), in_process(content)(x))


@pytest.mark.parametrize("seconds", [0.3])
def test_each_request_keeps_its_own_timeout_inside_a_batch(
    live: LiveClient, api: FlaskClient, worker: subprocess.Popen, seconds: float
) -> None:
    content = model_bytes(onnx_models.tiny_mlp())
    # The worker waits a second to fill each batch: longer than the short request may wait.
    ready(api, "tiny", content, max_queue_delay_ms=1000, max_batch_size=64)
    x = np.ones((1, 4), np.float32)
    short = body(x, timeout=int(seconds * 1e6))
    answers = concurrently(live, "tiny", [short, body(x), body(x)])
    status, answer = answers[0]
    assert status == 504, answer
    assert answer["error"].startswith(("no answer within", "the job expired")), answer
    if answer["error"].startswith("the job expired"):  # refused by the worker: it was sent
        assert answer["job_id"], answer
    for status, answer in answers[1:]:
        assert status == 200, answer
        np.testing.assert_allclose(output_of(answer), in_process(content)(x), rtol=1e-6)


def test_batching_limits_are_checked_and_shown(api: FlaskClient) -> None:
    assert api.post("/v1/models", json={"name": "m"}).status_code == 201
    for bad in ({"max_batch_size": 0}, {"max_queue_delay_ms": -1}, {"max_batch_size": "x"}):
        response = api.patch("/v1/models/m", json=bad)
        assert response.status_code == 422, response.get_json()
        assert next(iter(bad)) in str(response.get_json()["errors"])
    changed = api.patch("/v1/models/m", json={"max_batch_size": 8, "max_queue_delay_ms": 2.5})
    assert changed.status_code == 200
    assert (changed.get_json()["max_batch_size"], changed.get_json()["max_queue_delay_ms"]) == (
        8,
        2.5,
    )
    reset = api.patch("/v1/models/m", json={"max_batch_size": None}).get_json()
    assert reset["max_batch_size"] is None and reset["max_queue_delay_ms"] == 2.5
