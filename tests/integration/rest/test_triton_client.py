"""tritonclient.http against a real `inference-farm api` process: metadata, readiness, index."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from inference_farm.client import Client
from tests import onnx_models


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

    server.load_model("tiny")
    server.unload_model("tiny")
