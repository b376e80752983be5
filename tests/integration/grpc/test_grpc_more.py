"""More of the gRPC endpoint of a real `inference-farm api` with a real worker: every
datatype raw and typed, TLS, readiness through a broker outage, health, reflection, and
requests the server refuses while it keeps serving."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tgrpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from inference_farm.cli.embedded_redis import free_port
from inference_farm.protocol.grpc import inference_pb2 as pb
from inference_farm.protocol.grpc import inference_pb2_grpc as pb_grpc
from tests import onnx_models
from tests.integration.conftest import running_grpc_api
from tests.integration.helpers import expected, model_bytes, new_key, post_version, settled_http
from tests.integration.rest.test_outage import Redis
from tests.services import stop_group, wait_for

SERVICE = "inference.GRPCInferenceService"
HEALTH = health_pb2.HealthCheckResponse
EVERY = model_bytes(onnx_models.all_types())
# FP16 has no typed contents field, and typed and raw data do not mix in one request.
TYPED_NAMES = [name for name in onnx_models.ALL_TYPES if name != "FP16"]
TYPED = model_bytes(onnx_models.all_types(TYPED_NAMES))
TEXT = ["", "ab", "é", "x y"]  # onnxruntime takes strings; the wire carries their UTF-8
FIELDS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
          "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
          "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
          "FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}  # fmt: skip


def sample(name: str) -> np.ndarray:
    """A [2, 2] array of datatype name, reaching its extremes where it has them."""
    if name == "BOOL":
        return np.array([[True, False], [False, True]])
    if name == "BYTES":
        return np.array(TEXT, dtype=object).reshape(2, 2)
    dtype = np.dtype({"FP16": "float16", "FP32": "float32", "FP64": "float64"}.get(name)
                     or name.lower())  # fmt: skip
    info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
    return np.array([[info.min, info.max], [0, 1]], dtype)


def feeds(names: list[str]) -> dict[str, np.ndarray]:
    return {f"in_{name}": sample(name) for name in names}


def wire(array: np.ndarray) -> np.ndarray:
    """The array as the wire carries it (strings as their UTF-8 bytes)."""
    if array.dtype == object:
        return np.vectorize(lambda s: s.encode(), otypes=[object])(array)
    return array


def assert_outputs(result: tgrpc.InferResult, model: bytes, names: list[str]) -> None:
    inputs = feeds(names)
    want = dict(zip([f"out_{n}" for n in names], expected(model, inputs), strict=True))
    for name, array in want.items():
        got = result.as_numpy(name)
        assert got.dtype == wire(array).dtype, (name, got.dtype)
        np.testing.assert_array_equal(got, wire(array), err_msg=name)


def typed_request(model: str) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=model)
    for name, array in feeds(TYPED_NAMES).items():
        tensor = message.inputs.add(name=name, datatype=name[3:], shape=[2, 2])
        getattr(tensor.contents, FIELDS[name[3:]]).extend(wire(array).ravel().tolist())
    return message


def auth(key: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {key}")]


def test_every_datatype_raw_and_typed_and_what_the_server_refuses(
    grpc_api: tuple[str, str], admin_key: str, farm_database: str, worker: subprocess.Popen
) -> None:
    url, address = grpc_api
    for name, content in (("every", EVERY), ("typed", TYPED)):
        assert post_version(url, admin_key, name, content).status_code == 202
        assert settled_http(url, admin_key, name, "1.0.0")["status"] == "ready"
    client = tgrpc.InferenceServerClient(address)
    names = list(onnx_models.ALL_TYPES)
    inputs = []
    for name, array in feeds(names).items():
        inputs.append(tgrpc.InferInput(name, [2, 2], name[3:]))
        inputs[-1].set_data_from_numpy(wire(array))
    raw = client.infer("every", inputs, headers=dict(auth(admin_key)))
    assert_outputs(raw, EVERY, names)

    channel = grpc.insecure_channel(address)
    infer = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer
    typed = infer(typed_request("typed"), metadata=auth(admin_key), timeout=30)
    assert_outputs(tgrpc.InferResult(typed), TYPED, TYPED_NAMES)

    # Bytes that are no ModelInferRequest: refused with a message, the server lives on.
    bare = channel.unary_unary(f"/{SERVICE}/ModelInfer")  # no serializers: bytes as they are
    with pytest.raises(grpc.RpcError) as raised:
        bare(b"\x0a\xff\x01", metadata=auth(admin_key), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    assert "not a valid protobuf message" in raised.value.details(), raised.value.details()

    mixed = typed_request("typed")
    mixed.raw_input_contents.append(b"\0" * 4)
    with pytest.raises(grpc.RpcError) as raised:
        infer(mixed, metadata=auth(admin_key), timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "'in_BOOL'" in raised.value.details(), raised.value.details()

    revoked, revoked_id = new_key(farm_database, ["admin"])
    gone = httpx.delete(f"{url}/v1/keys/{revoked_id}", headers=dict(auth(admin_key)))
    assert gone.status_code == 200, gone.text
    with pytest.raises(grpc.RpcError) as raised:
        infer(typed_request("typed"), metadata=auth(revoked), timeout=30)
    assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "revoked" in raised.value.details(), raised.value.details()

    assert_outputs(client.infer("every", inputs, headers=dict(auth(admin_key))), EVERY, names)


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def answers(client: tgrpc.InferenceServerClient) -> bool:
    try:
        return client.is_server_live()
    except tgrpc.InferenceServerException:
        return False


def test_tls_serves_grpc_to_a_client_that_trusts_the_certificate_only(
    farm_env: dict[str, str], tmp_path: Path
) -> None:
    cert, key = certificate(tmp_path)
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {**farm_env, "INFERENCE_FARM_GRPC_PORT": str(port), "INFERENCE_FARM_API_WORKERS": "1",
           "INFERENCE_FARM_API_PORT": str(free_port()), "INFERENCE_FARM_TLS_CERT": str(cert),
           "INFERENCE_FARM_TLS_KEY": str(key)}  # fmt: skip
    with open(tmp_path / "api.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "inference_farm", "api"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        client = tgrpc.InferenceServerClient(address, ssl=True, root_certificates=str(cert))
        assert wait_for(lambda: answers(client), timeout=60), (tmp_path / "api.log").read_text()
        assert client.is_server_ready() and client.get_server_metadata().name == "inference-farm"
        plain = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(address))
        with pytest.raises(grpc.RpcError) as raised:
            plain.ServerLive(pb.ServerLiveRequest(), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE, raised.value.details()
    finally:
        stop_group(process)


def health_of(channel: grpc.Channel, service: str) -> int:
    check = health_pb2_grpc.HealthStub(channel).Check
    return check(health_pb2.HealthCheckRequest(service=service), timeout=10).status


def test_readiness_and_health_follow_the_broker_and_reflection_lists_the_service(
    farm_env: dict[str, str], tmp_path: Path
) -> None:
    broker = Redis(tmp_path)
    broker.start()
    env = {**farm_env, "INFERENCE_FARM_BROKER_URL": broker.url}
    serving, not_serving = HEALTH.SERVING, HEALTH.NOT_SERVING
    try:
        with running_grpc_api(env, tmp_path / "api.log") as (_, address):
            channel = grpc.insecure_channel(address)
            ready = pb_grpc.GRPCInferenceServiceStub(channel).ServerReady

            def state() -> tuple[bool, list[int]]:
                answer = ready(pb.ServerReadyRequest(), timeout=10).ready
                return answer, [health_of(channel, name) for name in ("", SERVICE)]

            assert state() == (True, [serving, serving])
            services = ProtoReflectionDescriptorDatabase(channel).get_services()
            assert SERVICE in services, services
            broker.stop()
            assert state() == (False, [not_serving, not_serving])
            broker.start()
            assert wait_for(lambda: state()[0], timeout=30, interval=0.5)
            assert state() == (True, [serving, serving])
    finally:
        broker.stop()
