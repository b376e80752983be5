"""The gRPC endpoint of a real `inference-farm api` process, with a real worker:
tritonclient.grpc unchanged, every status code, keys in metadata, and coalescing with REST."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from tritonclient.grpc.auth import BasicAuth

from inference_farm.protocol.grpc import inference_pb2 as pb
from inference_farm.protocol.grpc import inference_pb2_grpc as pb_grpc
from tests import onnx_models
from tests.integration.conftest import running_grpc_api
from tests.integration.helpers import (
    LiveClient,
    batch_sizes,
    expected,
    model_bytes,
    new_key,
    post_version,
    settled_http,
)  # fmt: skip
from tests.services import wait_for

TINY = model_bytes(onnx_models.tiny_mlp())
MAX_REQUEST = 1024 * 1024
X = np.array([[1.0, -2.0, 3.0, 0.5]], np.float32)


@pytest.fixture
def farm(farm_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real API serving HTTP and gRPC: (its URL, its gRPC address)."""
    env = {**farm_env, "INFERENCE_FARM_MAX_REQUEST_BYTES": str(MAX_REQUEST)}
    with running_grpc_api(env, tmp_path / "api.log") as found:
        yield found


def ready_model(url: str, key: str, name: str, content: bytes = TINY) -> dict:
    assert post_version(url, key, name, content).status_code == 202
    return settled_http(url, key, name, "1.0.0")


def stub(address: str) -> pb_grpc.GRPCInferenceServiceStub:
    return pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(address))


def request(name: str, array: np.ndarray = X, **fields) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=name, **fields)
    message.inputs.add(name="x", datatype="FP32", shape=list(array.shape))
    message.raw_input_contents.append(array.tobytes())
    return message


def outcome(call, message, key: str | None) -> tuple[grpc.StatusCode | None, bool, str]:
    """The call's status (None when it succeeded), whether it said when to retry, its message."""
    metadata = [("authorization", f"Bearer {key}")] if key else []
    try:
        call(message, metadata=metadata, timeout=30)
    except grpc.RpcError as error:
        trailers = dict(error.trailing_metadata() or ())
        return error.code(), "retry-after" in trailers, error.details()
    return None, False, ""


def code_of(call, message, key: str | None) -> tuple[grpc.StatusCode, str]:
    """The status and message of a call that must fail."""
    code, _, details = outcome(call, message, key)
    assert code is not None, "the call succeeded"
    return code, details


def test_tritonclient_grpc_works_unchanged(
    farm: tuple[str, str], admin_key: str, worker: subprocess.Popen
) -> None:
    url, address = farm
    assert ready_model(url, admin_key, "tiny")["status"] == "ready"
    client = tgrpc.InferenceServerClient(address)
    headers = {"authorization": f"Bearer {admin_key}"}
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata().name == "inference-farm"
    assert client.is_model_ready("tiny", headers=headers)
    assert not client.is_model_ready("tiny", "2.0.0", headers=headers)
    metadata = client.get_model_metadata("tiny", headers=headers)
    assert [t.name for t in metadata.inputs] == ["x"] and list(metadata.versions) == ["1.0.0"]
    inputs = [tgrpc.InferInput("x", list(X.shape), "FP32")]
    inputs[0].set_data_from_numpy(X)
    result = client.infer("tiny", inputs, headers=headers, request_id="r-1")
    np.testing.assert_allclose(result.as_numpy("y"), expected(TINY, {"x": X})[0], rtol=1e-5)
    assert result.get_response().id == "r-1"
    scraped = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {admin_key}"}).text
    assert 'inference_farm_grpc_requests_total{code="OK",model="tiny",rpc="ModelInfer"}' in scraped
    basic = tgrpc.InferenceServerClient(address)  # Triton's BasicAuth plugin: key as password
    basic.register_plugin(BasicAuth("farm", admin_key))
    assert basic.is_model_ready("tiny") and basic.infer("tiny", inputs).as_numpy("y") is not None
    _, call = stub(address).ModelInfer.with_call(
        request("tiny"), metadata=[*headers.items(), ("x-request-id", "trace-0042")], timeout=30
    )
    assert dict(call.initial_metadata())["x-request-id"] == "trace-0042"
    index = client.get_model_repository_index(headers=headers)
    assert [(m.name, m.state) for m in index.models] == [("tiny", "READY")]
    client.unload_model("tiny", headers=headers)
    client.load_model("tiny", headers=headers)
    typed = pb.ModelInferRequest(model_name="tiny")
    typed.inputs.add(name="x", datatype="FP32", shape=[1, 4]).contents.fp32_contents.extend(
        X.ravel().tolist()
    )
    answer = stub(address).ModelInfer(typed, metadata=list(headers.items()), timeout=30)
    got = np.frombuffer(answer.raw_output_contents[0], np.float32).reshape(answer.outputs[0].shape)
    np.testing.assert_allclose(got, expected(TINY, {"x": X})[0], rtol=1e-5)


def test_every_failure_has_its_grpc_status_and_the_rest_message(
    farm: tuple[str, str], admin_key: str, farm_database: str, worker: subprocess.Popen
) -> None:
    url, address = farm
    ready_model(url, admin_key, "tiny")
    assert ready_model(url, admin_key, "broken", b"not a model")["status"] == "failed"
    reader, _ = new_key(farm_database, ["models:read"])
    infer = stub(address).ModelInfer
    cases = [
        (request("tiny"), None, grpc.StatusCode.UNAUTHENTICATED, "API key"),
        (request("tiny"), "ifk_bogus_key", grpc.StatusCode.UNAUTHENTICATED, "unknown"),
        (request("tiny"), reader, grpc.StatusCode.PERMISSION_DENIED, "infer"),
        (request("nope"), admin_key, grpc.StatusCode.NOT_FOUND, "nope"),
        (request("tiny", np.ones((1, 3), np.float32)), admin_key,
         grpc.StatusCode.INVALID_ARGUMENT, "x"),
        (request("broken", model_version="1.0.0"), admin_key,
         grpc.StatusCode.FAILED_PRECONDITION, "failed"),
    ]  # fmt: skip
    for message, key, code, text in cases:
        got, details = code_of(infer, message, key)
        assert (got, text in details) == (code, True), (code, details)
    huge = request("tiny", np.ones((1, 4), np.float32))
    huge.raw_input_contents.append(b"\0" * (2 * MAX_REQUEST))
    assert code_of(infer, huge, admin_key)[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
    slow, _ = new_key(farm_database, ["infer"], rate_per_second=0.01)
    calls = [outcome(infer, request("tiny"), slow) for _ in range(2)]
    assert calls[1][:2] == (grpc.StatusCode.RESOURCE_EXHAUSTED, True), calls
    late = request("tiny")
    late.parameters["timeout"].int64_param = 1  # a microsecond, as tritonclient sends it
    assert code_of(infer, late, admin_key)[0] == grpc.StatusCode.DEADLINE_EXCEEDED
    # Still serving after all of that.
    answer = stub(address).ModelInfer(
        request("tiny"), metadata=[("authorization", f"Bearer {admin_key}")], timeout=30
    )
    assert answer.model_name == "tiny" and answer.outputs[0].name == "y"


def test_a_model_no_worker_serves_is_unavailable(
    farm: tuple[str, str], admin_key: str, farm_database: str
) -> None:
    from tests.integration.helpers import ready_version

    _, address = farm
    ready_version(farm_database, "orphan")
    code, details = code_of(stub(address).ModelInfer, request("orphan"), admin_key)
    assert code == grpc.StatusCode.UNAVAILABLE and "no live worker" in details


def test_grpc_and_rest_requests_arriving_together_share_a_batch(
    farm: tuple[str, str], admin_key: str, worker: subprocess.Popen
) -> None:
    url, address = farm
    ready_model(url, admin_key, "tiny")
    live = LiveClient(url, admin_key)
    patched = httpx.patch(f"{url}/v1/models/tiny", json={"max_queue_delay_ms": 400},
                          headers={"Authorization": f"Bearer {admin_key}"})  # fmt: skip
    assert patched.status_code == 200, patched.text
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4],
                        "data": X.ravel().tolist()}]}  # fmt: skip
    metadata = [("authorization", f"Bearer {admin_key}")]
    with ThreadPoolExecutor(2) as pool:
        rest = pool.submit(live.post, "/v2/models/tiny/infer", body)
        grpc_answer = pool.submit(stub(address).ModelInfer, request("tiny"), metadata=metadata,
                                  timeout=30)  # fmt: skip
        assert rest.result().status_code == 200 and grpc_answer.result().outputs
    live.close()
    assert wait_for(lambda: len(batch_sizes(worker, "tiny")) >= 2, 30)
    assert 2 in batch_sizes(worker, "tiny"), batch_sizes(worker, "tiny")


def test_a_call_s_own_deadline_becomes_its_job_s(
    farm_env: dict[str, str], admin_key: str, worker: subprocess.Popen, tmp_path: Path
) -> None:
    # Uncoalesced, each call is its own job at once: the late one is queued in Redis behind
    # the busy one, so only the deadline it carries can keep the worker from running it.
    env = {**farm_env, "INFERENCE_FARM_COALESCE_REQUESTS": "false"}
    with running_grpc_api(env, tmp_path / "api.log") as (url, address):
        _late_call_never_runs(url, address, admin_key, worker)


def _late_call_never_runs(url: str, address: str, admin_key: str, worker: subprocess.Popen) -> None:
    ready_model(url, admin_key, "steady", model_bytes(onnx_models.steady_model()))
    x = np.ones((1, 1024), np.float32)
    metadata = [("authorization", f"Bearer {admin_key}")]
    infer = stub(address).ModelInfer
    with ThreadPoolExecutor(1) as pool:
        busy = pool.submit(infer, request("steady", x), metadata=metadata, timeout=60)
        log = Path(worker.log_path)
        assert wait_for(lambda: "Task farm.infer" in log.read_text(), 30)
        with pytest.raises(grpc.RpcError) as late:  # no timeout parameter: only the deadline
            infer(request("steady", x), metadata=metadata, timeout=0.1)
        assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert busy.result().outputs
    assert infer(request("steady", x), metadata=metadata, timeout=60).outputs  # runs after it
    lines = [line for line in log.read_text().splitlines() if "job job_id=" in line]
    # The late call never ran: the worker dropped it as expired (or, had its deadline passed
    # before it was sent, the API never sent it). The busy run is many times its deadline.
    assert sum("outcome=succeeded" in line for line in lines) == 2, lines
    assert sum("outcome=expired" in line for line in lines) <= 1, lines
