"""The client's gRPC side: infer over inference.GRPCInferenceService, with the HTTP client's
errors and retries. grpcio is optional (the `grpc` extra); it is imported on first use."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from inference_farm.client import tensors
from inference_farm.client.errors import RETRIED, FarmClientError, backoff, error_for

DEFAULT_PORT = 8001
# Slack past a request's own deadline, so that the server's DEADLINE_EXCEEDED arrives first.
DEADLINE_SLACK = 5.0
MISSING = "the gRPC client needs grpcio: pip install 'inference-farm[grpc]'"
# gRPC status code names and the HTTP status whose error class they map to; RESOURCE_EXHAUSTED
# is 429 when the server says when to retry (rate limits, full queues) and 413 otherwise.
STATUS_OF_CODE = {
    "INVALID_ARGUMENT": 400, "UNAUTHENTICATED": 401, "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404, "FAILED_PRECONDITION": 409, "RESOURCE_EXHAUSTED": 413,
    "UNAVAILABLE": 503, "DEADLINE_EXCEEDED": 504, "UNIMPLEMENTED": 501,
}  # fmt: skip


def _grpc() -> tuple[Any, Any, Any]:
    """grpc and the generated modules, or ImportError naming the extra to install."""
    try:
        import grpc

        from inference_farm.protocol.grpc import inference_pb2, inference_pb2_grpc
    except ImportError as exc:
        raise ImportError(f"{MISSING} ({exc})") from None
    return grpc, inference_pb2, inference_pb2_grpc


def default_address(api_url: str | None = None) -> str:
    """INFERENCE_FARM_GRPC_URL, else the API URL's host (INFERENCE_FARM_URL) on port 8001."""
    address = os.environ.get("INFERENCE_FARM_GRPC_URL")
    if address:
        return address
    url = api_url or os.environ.get("INFERENCE_FARM_URL") or "http://127.0.0.1:8000"
    parts = urlsplit(url if "//" in url else f"//{url}")
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    return ("grpcs://" if parts.scheme == "https" else "") + f"{host}:{DEFAULT_PORT}"


def error_of_rpc(code: str, details: str, trailing: dict[str, str]) -> FarmClientError:
    """The FarmClientError of a failed call: its code's HTTP status, message and retry-after."""
    retry_after = _seconds(trailing.get("retry-after"))
    status = STATUS_OF_CODE.get(code, 500)
    if code == "RESOURCE_EXHAUSTED" and retry_after is not None:
        status = 429
    return error_for(status, details or code, retry_after)


def _seconds(value: str | None) -> float | None:
    try:
        return None if value is None else max(0.0, float(value))
    except ValueError:
        return None


def _parameters(entries: Any) -> dict[str, Any]:
    """A map of InferParameter as plain Python values."""
    return {key: getattr(value, value.WhichOneof("parameter_choice") or "string_param")
            for key, value in entries.items()}  # fmt: skip


class GrpcClient:
    """A synchronous gRPC client with Client.infer's signature, answers and errors.

    address: host:port, or grpcs://host:port for TLS (also on when root_certificates is
    given: a PEM file or its bytes); default from INFERENCE_FARM_GRPC_URL, else the host
    of INFERENCE_FARM_URL on port 8001. UNAVAILABLE and rate limits are retried as Client does.
    """

    def __init__(
        self, address: str | None = None, api_key: str | None = None, timeout: float = 30.0,
        retry_budget: float = 30.0, root_certificates: str | Path | bytes | None = None,
    ) -> None:  # fmt: skip
        grpc, self._pb, stubs = _grpc()
        address = address or default_address()
        tls = address.startswith("grpcs://") or root_certificates is not None
        self.address = address.removeprefix("grpcs://").removeprefix("grpc://")
        api_key = api_key or os.environ.get("INFERENCE_FARM_API_KEY")
        self._metadata = [("authorization", f"Bearer {api_key}")] if api_key else []
        self.timeout, self.retry_budget = timeout, retry_budget
        # Tensors may be large: the server's own limit (max_request_bytes) is the one that counts.
        options = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
        if tls:
            roots = root_certificates
            if isinstance(roots, str | Path):
                roots = Path(roots).read_bytes()
            credentials = grpc.ssl_channel_credentials(root_certificates=roots)
            self._channel = grpc.secure_channel(self.address, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(self.address, options=options)
        self._stub = stubs.GRPCInferenceServiceStub(self._channel)
        self._rpc_error = grpc.RpcError

    def infer(
        self, model: str, inputs: dict[str, np.ndarray], version: str | None = None,
        outputs: list[str] | None = None, timeout: float | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Run inference and wait; arrays by output name (lists of JSON for non-tensor ones)."""
        timeout = self.timeout if timeout is None else timeout
        request = self._request(model, inputs, version, outputs, timeout)
        response = self._call(request, timeout + DEADLINE_SLACK)
        return self._decode(response)

    def _request(
        self, model: str, inputs: dict[str, np.ndarray], version: str | None,
        outputs: list[str] | None, timeout: float,
    ) -> Any:  # fmt: skip
        """A ModelInferRequest carrying every input as raw_input_contents."""
        request = self._pb.ModelInferRequest(model_name=model, model_version=version or "")
        # The server takes parameters.timeout in microseconds, as Triton's clients send it.
        request.parameters["timeout"].int64_param = max(1, round(timeout * 1e6))
        for name, value in inputs.items():
            array = np.asarray(value)
            datatype = tensors.datatype_of(array)
            request.inputs.add(name=name, datatype=datatype, shape=list(array.shape))
            request.raw_input_contents.append(tensors.raw_data(array, datatype))
        for name in outputs or []:
            request.outputs.add(name=name)
        return request

    def _call(self, request: Any, deadline: float) -> Any:
        """ModelInfer, retrying UNAVAILABLE and rate limits within the retry budget."""
        started, attempt = time.monotonic(), 0
        while True:
            try:
                return self._stub.ModelInfer(request, metadata=self._metadata, timeout=deadline)
            except self._rpc_error as exc:
                trailing = {key.lower(): value for key, value in exc.trailing_metadata() or ()}
                error = error_of_rpc(exc.code().name, exc.details() or "", trailing)
            if error.status == 503 and "failed to connect" in error.message:
                error = error_for(0, f"cannot reach {self.address}: {error.message}")
            retryable = error.status in (0, *RETRIED)
            delay = backoff(error, attempt, started, self.retry_budget) if retryable else None
            if delay is None:
                raise error
            time.sleep(delay)
            attempt += 1

    @staticmethod
    def _decode(response: Any) -> dict[str, Any]:
        """The outputs of a ModelInferResponse, from raw_output_contents, by name."""
        raw = list(response.raw_output_contents)
        decoded = {}
        for index, tensor in enumerate(response.outputs):
            entry = {
                "name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape),
                "parameters": _parameters(tensor.parameters),
            }  # fmt: skip
            if index >= len(raw):
                raise ValueError(f"output {tensor.name!r}: the answer carries no raw data for it")
            decoded[tensor.name] = tensors.decode_output(entry, raw[index])
        return decoded

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> GrpcClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
