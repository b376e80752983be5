"""Every datatype end to end through tritonclient, and 50 concurrent sync requests."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
import tritonclient.http as triton
from flask.testing import FlaskClient

from tests import onnx_models
from tests.integration.helpers import model_bytes, settled, upload

NUMPY = {
    "BOOL": np.bool_, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": np.object_,
}  # fmt: skip


def _sample(datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([[b"a", "h\u00e9".encode()], [b"", b"\x00z"]], dtype=np.object_)
    if datatype == "BOOL":
        return np.array([[True, False], [False, True]])
    return (np.arange(4).reshape(2, 2) + 1).astype(NUMPY[datatype])


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_every_datatype_round_trips(
    api: FlaskClient, triton_client: triton.InferenceServerClient, worker: subprocess.Popen,
    binary: bool,
) -> None:  # fmt: skip
    assert upload(api, "types", model_bytes(onnx_models.all_types())).status_code == 202
    assert settled(api, "types", "1.0.0")["status"] == "ready"
    client = triton_client
    inputs, outputs = [], []
    for datatype in onnx_models.ALL_TYPES:
        tensor = triton.InferInput(f"in_{datatype}", [2, 2], datatype)
        tensor.set_data_from_numpy(_sample(datatype), binary_data=binary)
        inputs.append(tensor)
        outputs.append(triton.InferRequestedOutput(f"out_{datatype}", binary_data=binary))
    result = client.infer("types", inputs, outputs=outputs)
    for datatype in onnx_models.ALL_TYPES:
        got, want = result.as_numpy(f"out_{datatype}"), _sample(datatype)
        if datatype == "BYTES" and not binary:  # JSON carries text, and tritonclient gives str
            want = np.vectorize(lambda item: item.decode(), otypes=[object])(want)
        np.testing.assert_array_equal(got, want, err_msg=datatype)


def test_fifty_concurrent_sync_requests_each_get_their_own_answer(
    api: FlaskClient, triton_client: triton.InferenceServerClient, worker: subprocess.Popen
) -> None:
    assert upload(api, "tiny", model_bytes(onnx_models.tiny_mlp())).status_code == 202
    assert settled(api, "tiny", "1.0.0")["status"] == "ready"
    client = triton_client
    import onnxruntime as ort

    local = ort.InferenceSession(model_bytes(onnx_models.tiny_mlp()))

    # tritonclient.http is not thread-safe (gevent underneath): concurrency is async_infer's,
    # on the fixture's pool of 50 connections.
    inputs = []
    for index in range(50):
        tensor = triton.InferInput("x", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.full((1, 4), index / 10, dtype=np.float32))
        inputs.append(tensor)
    pending = [client.async_infer("tiny", [t], request_id=str(i)) for i, t in enumerate(inputs)]
    for index, waiting in enumerate(pending):
        answer = waiting.get_result(timeout=120)
        assert answer.get_response()["id"] == str(index)
        x = np.full((1, 4), index / 10, dtype=np.float32)
        np.testing.assert_allclose(answer.as_numpy("y"), local.run(None, {"x": x})[0], rtol=1e-6)
