"""Synchronous Open Inference Protocol infer through a real worker, and every bad request."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import tritonclient.http as triton
from flask.testing import FlaskClient

from inference_farm.broker.app import create_celery
from inference_farm.settings import Settings
from tests import onnx_models
from tests.integration.helpers import (
    BAD_BODIES,
    GOOD,
    LiveClient,
    expected,
    model_bytes,
    settled,
    upload,
)

X = np.arange(12, dtype=np.float32).reshape(3, 4) / 10


@pytest.fixture
def tiny(api: FlaskClient, worker: subprocess.Popen) -> str:
    """A ready tiny_mlp called 'tiny', served by the worker."""
    assert upload(api, "tiny", model_bytes(onnx_models.tiny_mlp())).status_code == 202
    assert settled(api, "tiny", "1.0.0")["status"] == "ready"
    return "tiny"


def infer(live: LiveClient, name: str, body: object, path: str = "") -> tuple[int, dict]:
    response = live.post(f"/v2/models/{name}{path}/infer", json=body)
    return response.status_code, response.get_json()


def test_json_infer_matches_onnxruntime_and_echoes_the_id(
    live: LiveClient, api: FlaskClient, tiny: str
) -> None:
    body = {
        "id": "req-7",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [3, 4], "data": X.tolist()}],
    }
    status, answer = infer(live, tiny, body)
    assert status == 200, answer
    assert (answer["model_name"], answer["model_version"], answer["id"]) == (
        "tiny",
        "1.0.0",
        "req-7",
    )
    [output] = answer["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("y", "FP32", [3, 2])
    want = expected(model_bytes(onnx_models.tiny_mlp()), {"x": X})[0]
    np.testing.assert_allclose(np.array(output["data"]).reshape(3, 2), want, rtol=1e-6)
    status, pinned = infer(live, tiny, body, "/versions/1.0.0")
    assert status == 200 and pinned["outputs"] == answer["outputs"]


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_infer(
    triton_client: triton.InferenceServerClient, tiny: str, binary: bool
) -> None:
    client = triton_client
    tensor = triton.InferInput("x", [3, 4], "FP32")
    tensor.set_data_from_numpy(X, binary_data=binary)
    result = client.infer(
        "tiny", [tensor], outputs=[triton.InferRequestedOutput("y", binary_data=binary)]
    )
    want = expected(model_bytes(onnx_models.tiny_mlp()), {"x": X})[0]
    np.testing.assert_allclose(result.as_numpy("y"), want, rtol=1e-6)


def test_non_tensor_output_comes_back_as_json(
    live: LiveClient, api: FlaskClient, worker: subprocess.Popen
) -> None:
    upload(api, "zipmap", model_bytes(onnx_models.sequence_output()))
    assert settled(api, "zipmap", "1.0.0")["status"] == "ready"
    x = [[0.2, 0.8], [0.9, 0.1]]
    status, answer = infer(
        live, "zipmap", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": x}]}
    )
    assert status == 200, answer
    outputs = {o["name"]: o for o in answer["outputs"]}
    assert outputs["label"]["data"] == [1, 0]
    probs = [json.loads(item) for item in outputs["probs"]["data"]]
    assert probs == [{"0": pytest.approx(0.2), "1": pytest.approx(0.8)},
                     {"0": pytest.approx(0.9), "1": pytest.approx(0.1)}]  # fmt: skip
    assert outputs["probs"]["parameters"]["content_type"] == "application/json"


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_requests_get_400_and_the_farm_keeps_serving(
    live: LiveClient, api: FlaskClient, tiny: str, case: str
) -> None:
    body, fragment = BAD_BODIES[case]
    status, answer = infer(live, tiny, body)
    assert status == 400, answer
    assert set(answer) == {"error"} and fragment in answer["error"]
    status, _ = infer(live, tiny, {"inputs": [GOOD]})
    assert status == 200


def test_malformed_json_gets_400(live: LiveClient, api: FlaskClient, tiny: str) -> None:
    response = live.post(
        "/v2/models/tiny/infer", data=b'{"inputs": [', content_type="application/json"
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.get_json()["error"]


def test_unknown_model_or_version_gets_404(live: LiveClient, api: FlaskClient, tiny: str) -> None:
    assert infer(live, "ghost", {"inputs": [GOOD]})[0] == 404
    status, answer = infer(live, tiny, {"inputs": [GOOD]}, "/versions/9.9.9")
    assert status == 404 and "9.9.9" in answer["error"]


def test_timed_out_request_gets_504_and_is_never_run(
    live: LiveClient, api: FlaskClient, tiny: str, farm_settings: Settings
) -> None:
    body = {"inputs": [GOOD], "parameters": {"timeout": 1}}  # one microsecond
    status, answer = infer(live, tiny, body)
    assert status == 504, answer
    assert infer(live, tiny, {"inputs": [GOOD]})[0] == 200  # queued after it, so it was seen
    if "job_id" not in answer:  # it expired in the API before it was sent: nothing to run
        assert answer["error"].startswith("no answer within"), answer
        return
    job_id = answer["job_id"]
    # The 504 came either from the API's own wait or from the worker refusing the expired job.
    assert answer["error"].startswith(("no answer within", "the job expired before a worker"))
    result = create_celery(farm_settings).AsyncResult(job_id)
    # Celery discarded it as expired (REVOKED), or the API read and dropped the worker's
    # refusal (PENDING once forgotten), or the refusal is still stored: never a real answer.
    assert result.state in ("REVOKED", "PENDING", "SUCCESS")
    if result.state == "SUCCESS":  # a coalesced job holds one reply per request
        replies = result.result.get("replies", [result.result])
        assert [(r["ok"], r.get("expired")) for r in replies] == [(False, True)]
