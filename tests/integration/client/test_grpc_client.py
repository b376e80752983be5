"""GrpcClient and `inference-farm infer --grpc` against a real API serving gRPC and a real
worker: onnxruntime's answers, every datatype, and the HTTP client's error classes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference_farm.client import Client, GrpcClient, NotFound, Unauthorized
from tests import onnx_models
from tests.integration.client.test_client import X, deploy, expected, sample


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`inference-farm ARGS` with env on top of this environment less its INFERENCE_FARM_*."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_FARM_")}
    return subprocess.run(
        [sys.executable, "-m", "inference_farm", *args],
        env={**base, **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_grpc_client_and_cli_infer_answer_as_onnxruntime_does(
    grpc_api: tuple[str, str], admin_key: str, worker: subprocess.Popen, tmp_path: Path
) -> None:
    url, address = grpc_api
    with Client(url, admin_key) as http:
        deploy(http, onnx_models.tiny_mlp(), "tiny", tmp_path)
        deploy(http, onnx_models.all_types(), "types", tmp_path)
    want = expected(onnx_models.tiny_mlp(), {"x": X})["y"]
    with GrpcClient(address, admin_key) as client:
        got = client.infer("tiny", {"x": X})["y"]
        assert got.dtype == np.float32 and got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-6)
        pinned = client.infer("tiny", {"x": X}, version="1.0.0", outputs=["y"], timeout=20)
        np.testing.assert_array_equal(pinned["y"], got)
        inputs = {f"in_{datatype}": sample(datatype) for datatype in onnx_models.ALL_TYPES}
        answered = client.infer("types", inputs)
        for datatype in onnx_models.ALL_TYPES:
            sent = inputs[f"in_{datatype}"]
            assert answered[f"out_{datatype}"].dtype == sent.dtype, datatype
            np.testing.assert_array_equal(answered[f"out_{datatype}"], sent, err_msg=datatype)
        with pytest.raises(NotFound, match="ghost"):
            client.infer("ghost", {"x": X})
    with GrpcClient(address, "ifk_bogus_key") as stranger, pytest.raises(Unauthorized):
        stranger.infer("tiny", {"x": X})

    np.save(tmp_path / "x.npy", X)
    key = {"INFERENCE_FARM_API_KEY": admin_key}
    # --grpc with an address, and bare (the address from INFERENCE_FARM_GRPC_URL).
    given = cli(key, "infer", "tiny", "--input", f"x={tmp_path / 'x.npy'}", "--json",
                "--url", "http://127.0.0.1:1", "--grpc", address)  # fmt: skip
    bare = cli({**key, "INFERENCE_FARM_GRPC_URL": address}, "infer", "tiny",
               "--input", f"x={tmp_path / 'x.npy'}", "--grpc", "--json")  # fmt: skip
    for shown in (given, bare):
        assert shown.returncode == 0, shown.stderr
        np.testing.assert_allclose(json.loads(shown.stdout)["y"]["data"], want, rtol=1e-6)
    ghost = cli(key, "infer", "ghost", "--input", f"x={tmp_path / 'x.npy'}", "--grpc", address)
    assert (ghost.returncode, ghost.stderr.strip()) == (5, "error: model 'ghost' not found")
