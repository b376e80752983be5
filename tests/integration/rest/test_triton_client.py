"""tritonclient.http against a real `inference-farm api` process: metadata, readiness, index,
and load and unload, which warm and evict the model in the workers' session caches."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from inference_farm.client import Client
from tests import onnx_models
from tests.integration.helpers import expected, model_bytes, triton_infer
from tests.services import wait_for


def test_tritonclient_metadata_readiness_and_index(
    api_url: str,
    admin_key: str,
    triton_client: triton.InferenceServerClient,
    worker: subprocess.Popen,
    tmp_path: Path,
) -> None:
    path = onnx_models.save(onnx_models.tiny_mlp(), tmp_path / "tiny.onnx")
    with Client(api_url, admin_key) as client:
        record = client.models.upload(path, "tiny")
        assert client.models.wait("tiny", record["version"])["status"] == "ready"

    server = triton_client
    assert server.is_server_live() and server.is_server_ready()
    assert server.get_server_metadata()["name"] == "inference-farm"
    assert server.is_model_ready("tiny")
    assert server.is_model_ready("tiny", "1.0.0")
    assert not server.is_model_ready("tiny", "2.0.0")
    metadata = server.get_model_metadata("tiny")
    assert metadata["name"] == "tiny" and metadata["versions"] == ["1.0.0"]
    assert metadata["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}]
    assert metadata["outputs"] == [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}]
    index = server.get_model_repository_index()
    assert index == [{"name": "tiny", "version": "1.0.0", "state": "READY"}]
    with pytest.raises(InferenceServerException, match="model 'ghost' not found"):
        server.get_model_metadata("ghost")

    _check_load_and_unload(server, api_url, admin_key)


def _loaded(api_url: str, key: str) -> list[tuple[str, str]]:
    """The sessions the live workers hold, as /v1/workers lists them: (model, version)."""
    headers = {"Authorization": f"Bearer {key}"}
    workers = httpx.get(f"{api_url}/v1/workers", headers=headers, timeout=10).json()["workers"]
    return [(s["name"], s["version"]) for one in workers for s in one["sessions"]]


def _check_load_and_unload(server: triton.InferenceServerClient, api_url: str, key: str) -> None:
    """Unload evicts the model from the worker's cache, load warms it (answering once it has),
    and a request after an unload is served, loading it again."""
    server.unload_model("tiny")  # the validation may have left a session behind
    assert wait_for(lambda: _loaded(api_url, key) == [], timeout=10), _loaded(api_url, key)
    server.load_model("tiny")
    assert _loaded(api_url, key) == [("tiny", "1.0.0")]
    server.unload_model("tiny")
    assert wait_for(lambda: _loaded(api_url, key) == [], timeout=10), _loaded(api_url, key)
    x = np.ones((1, 4), np.float32)
    answer = triton_infer(server, "tiny", {"x": x}).as_numpy("y")
    np.testing.assert_allclose(answer, expected(model_bytes(onnx_models.tiny_mlp()), {"x": x})[0])
    assert _loaded(api_url, key) == [("tiny", "1.0.0")]
