"""GrpcClient without a server: status codes to error classes, addresses, and imports that
stay light (and say what to install when grpcio is missing)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from inference_farm.client import (
    FarmClientError,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    Timeout,
    Unauthorized,
    Unavailable,
)
from inference_farm.client.grpc_client import default_address, error_of_rpc


@pytest.mark.parametrize(
    ("code", "trailing", "kind", "status"),
    [
        ("INVALID_ARGUMENT", {}, InvalidInput, 400),
        ("UNAUTHENTICATED", {}, Unauthorized, 401),
        ("PERMISSION_DENIED", {}, Forbidden, 403),
        ("NOT_FOUND", {}, NotFound, 404),
        ("FAILED_PRECONDITION", {}, InvalidInput, 409),
        ("RESOURCE_EXHAUSTED", {}, InvalidInput, 413),
        ("RESOURCE_EXHAUSTED", {"retry-after": "2"}, RateLimited, 429),
        ("UNAVAILABLE", {"retry-after": "1"}, Unavailable, 503),
        ("DEADLINE_EXCEEDED", {}, Timeout, 504),
        ("INTERNAL", {}, FarmClientError, 500),
    ],
)
def test_status_codes_map_to_the_http_clients_errors(
    code: str, trailing: dict[str, str], kind: type, status: int
) -> None:
    error = error_of_rpc(code, "the server's message", trailing)
    assert (type(error), error.status, error.message) == (kind, status, "the server's message")
    assert error.retry_after == (float(trailing["retry-after"]) if trailing else None)


def test_default_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("INFERENCE_FARM_GRPC_URL", raising=False)
    monkeypatch.delenv("INFERENCE_FARM_URL", raising=False)
    assert default_address() == "127.0.0.1:8001"
    assert default_address("http://farm.example:8000/") == "farm.example:8001"
    assert default_address("https://farm.example") == "grpcs://farm.example:8001"
    assert default_address("http://[::1]:8000") == "[::1]:8001"
    monkeypatch.setenv("INFERENCE_FARM_GRPC_URL", "grpc.example:9001")
    assert default_address("http://farm.example:8000") == "grpc.example:9001"


PROBE = """
import json, sys
{block}
from inference_farm.client import GrpcClient
try:
    GrpcClient("127.0.0.1:1").close()
    print(json.dumps(sorted(sys.modules)))
except ImportError as exc:
    print(json.dumps(str(exc)))
"""
SERVER_SIDE = ("flask", "sqlalchemy", "celery", "onnxruntime", "kombu", "redis", "pydantic")


def probe(block: str = "") -> object:
    result = subprocess.run(
        [sys.executable, "-c", PROBE.format(block=block)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_grpc_client_imports_only_the_generated_modules_and_needs_grpcio() -> None:
    modules = probe()
    assert isinstance(modules, list)
    ours = [name for name in modules if name.startswith("inference_farm.protocol")]
    assert sorted(ours) == [
        "inference_farm.protocol", "inference_farm.protocol.grpc",
        "inference_farm.protocol.grpc.inference_pb2",
        "inference_farm.protocol.grpc.inference_pb2_grpc",
    ]  # fmt: skip
    assert not [name for name in modules if name.split(".")[0] in SERVER_SIDE]
    message = probe("sys.modules['grpc'] = None")
    assert isinstance(message, str) and "pip install 'inference-farm[grpc]'" in message
