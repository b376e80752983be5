"""Helpers of the model lifecycle tests: upload through the API, wait for validation."""

from __future__ import annotations

import io
import re
import time
from pathlib import Path
from typing import Any

import onnx
from flask.testing import FlaskClient

WAIT_S = 90


def upload(api: FlaskClient, name: str, content: bytes, **form: str) -> Any:
    """POST a model file as multipart; the response."""
    data = {"file": (io.BytesIO(content), "model.onnx"), **form}
    return api.post(f"/v1/models/{name}/versions", data=data, content_type="multipart/form-data")


def settled(api: FlaskClient, name: str, version: str) -> dict:
    """The version record once it is no longer pending."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        record = api.get(f"/v1/models/{name}/versions/{version}").get_json()
        if record["status"] != "pending":
            return record
        time.sleep(0.2)
    raise AssertionError(f"{name} {version} still pending after {WAIT_S}s")


def model_bytes(model: onnx.ModelProto) -> bytes:
    """Serialized model."""
    return model.SerializeToString()


TINY_SIGNATURE = {
    "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4], "kind": "tensor"}],
    "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2], "kind": "tensor"}],
}


def ready_version(database_url: str, name: str, signature: dict = TINY_SIGNATURE) -> None:
    """Register a ready version straight in the registry, with no worker involved."""
    from inference_farm.registry import Database, catalog

    database = Database(database_url)
    model = catalog.ensure_model(database.session(), name)
    catalog.add_version(database.session(), model, "1.0.0", status="ready", signature=signature)
    database.remove()
    database.engine.dispose()


def beat_for(broker_url: str, queue: str, hostname: str = "paused@tests") -> None:
    """Beat, as a worker does, for a worker that consumes queue but takes nothing from it
    (as one busy elsewhere would), so that jobs wait in Redis; it counts for FRESH_S seconds.
    """
    import redis

    from inference_farm.broker import heartbeat

    client = redis.Redis.from_url(broker_url)
    heartbeat.beat(client, hostname, {"pid": 0, "device": "cpu", "queues": [queue]})
    client.close()


def new_key(database_url: str, scopes: list[str], **fields: Any) -> tuple[str, int]:
    """Create a key straight in the registry; its secret and id."""
    from inference_farm.registry import Database
    from inference_farm.registry.keys import create_key

    database = Database(database_url)
    created = create_key(database.session(), "test", scopes, **fields)
    secret, key_id = created.secret, created.record.id
    database.remove()
    database.engine.dispose()
    return secret, key_id


def new_admin_key(database_url: str) -> str:
    """Create an admin key straight in the registry; its secret."""
    return new_key(database_url, ["admin"])[0]


def authorized(app: Any, key: str) -> FlaskClient:
    """A test client of app that sends key on every request."""
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    return client


def client_for(settings: Any) -> FlaskClient:
    """A test client of a new app on settings, with a fresh admin key."""
    from inference_farm.api import create_app

    return authorized(create_app(settings), new_admin_key(settings.effective_database_url))


class Bearer:
    """A tritonclient plugin that sends an API key."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, request: Any) -> None:
        request.headers["Authorization"] = f"Bearer {self.key}"


def post_version(
    url: str, key: str, name: str, content: bytes, filename: str = "model.onnx",
    warmup: tuple[str, bytes] | None = None, **form: str,
) -> Any:  # fmt: skip
    """POST a model file (and warmup samples) to a real API as multipart; the response."""
    import httpx

    files = {"file": (filename, content)}
    if warmup is not None:
        files["warmup"] = warmup
    headers = {"Authorization": f"Bearer {key}"}
    path = f"{url}/v1/models/{name}/versions"
    return httpx.post(path, files=files, data=form, headers=headers, timeout=60)


def settled_http(url: str, key: str, name: str, version: str) -> dict:
    """The version record, read from a real API, once it is no longer pending."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        response = httpx.get(f"{url}/v1/models/{name}/versions/{version}", headers=headers)
        record = response.json()
        if record.get("status") != "pending":
            return record
        time.sleep(0.1)
    raise AssertionError(f"{name} {version} still pending after {WAIT_S}s")


class LiveResponse:
    """An httpx response read the way Flask's test client reads its own."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self.status_code = response.status_code
        self.headers = response.headers
        self.data = response.content

    def get_json(self) -> Any:
        """The body as JSON, or None when it is not JSON."""
        try:
            return self.response.json()
        except ValueError:
            return None


class LiveClient:
    """A real `inference-farm api` over HTTP, with the test client's post(): sync infer is
    answered by the server's event loop, which Flask's test client never reaches."""

    def __init__(self, url: str, key: str | None) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=60)

    def post(
        self, path: str, json: Any = None, data: bytes | None = None,
        content_type: str | None = None, headers: dict[str, str] | None = None,
    ) -> LiveResponse:  # fmt: skip
        """POST path as the test client would, to the real server."""
        headers = dict(headers or {})
        if content_type:
            headers["Content-Type"] = content_type
        return LiveResponse(self.http.post(path, json=json, content=data, headers=headers))

    def close(self) -> None:
        """Close the HTTP connections."""
        self.http.close()


def triton_infer(client: Any, model: str, feeds: dict[str, Any]) -> Any:
    """One infer through tritonclient.http, its inputs typed from the numpy arrays."""
    import tritonclient.http as triton
    from tritonclient.utils import np_to_triton_dtype

    inputs = []
    for name, array in feeds.items():
        tensor = triton.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return client.infer(model, inputs)


def models_cli(api_url: str, key: str, *args: str) -> Any:
    """`inference-farm models ARGS` against api_url with key, as a subprocess."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_FARM_")}
    env["INFERENCE_FARM_URL"], env["INFERENCE_FARM_API_KEY"] = api_url, key
    return subprocess.run(
        [sys.executable, "-m", "inference_farm", "models", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def expected(model: bytes, feeds: dict[str, Any]) -> list[Any]:
    """What onnxruntime in-process answers."""
    import onnxruntime as ort

    return ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, feeds)


# Sync infer bodies that must get 400, and the text the error must hold.
GOOD = {"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}
BAD_BODIES = {
    "not-an-object": ([GOOD], "JSON object"),
    "no-inputs": ({"inputs": []}, "inputs"),
    "missing-input": ({"inputs": [{**GOOD, "name": "z"}]}, "'z'"),
    "wrong-datatype": ({"inputs": [{**GOOD, "datatype": "INT64"}]}, "expected FP32"),
    "wrong-rank": ({"inputs": [{**GOOD, "shape": [4]}]}, "expected FP32"),
    "wrong-fixed-dim": ({"inputs": [{**GOOD, "shape": [2, 2]}]}, "expected FP32"),
    "short-data": ({"inputs": [{**GOOD, "data": [1, 2, 3]}]}, "elements"),
    "strings-for-numbers": ({"inputs": [{**GOOD, "data": ["a", "b", "c", "d"]}]}, "x"),
    "negative-dim": ({"inputs": [{**GOOD, "shape": [-1, 4]}]}, "negative"),
    "absurd-dims": ({"inputs": [{**GOOD, "shape": [10**9, 10**9]}]}, "limit"),
    "unknown-output": ({"inputs": [GOOD], "outputs": [{"name": "nope"}]}, "nope"),
    "bad-timeout": ({"inputs": [GOOD], "parameters": {"timeout": "soon"}}, "timeout"),
}


def batch_sizes(worker: Any, model: str) -> list[int]:
    """The batch size of every request of model the worker ran, from its one line per job."""
    text = Path(worker.log_path).read_text()
    pattern = re.compile(rf"job job_id=\S+ model={re.escape(model)} .*?batch_size=(\d+)")
    return [int(found) for found in pattern.findall(text)]
