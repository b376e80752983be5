"""Providers per worker device, the start-up device check, and serving sessions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from inference_farm.errors import SettingsError, Unavailable
from inference_farm.runtime.sessions import check_device, make_session, providers_for
from tests.onnx_models import save, tiny_mlp

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
cpu_only = pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has a CUDA provider")


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime claims a CUDA provider that it cannot really use."""
    available = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: available)


def test_cpu_providers() -> None:
    assert providers_for("cpu") == ["CPUExecutionProvider"]


@cpu_only
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_provider_is_unavailable(device: str) -> None:
    with pytest.raises(Unavailable, match="gpu extra") as caught:
        providers_for(device)
    assert f"worker_device is {device}" in str(caught.value)
    assert "onnxruntime-gpu" in str(caught.value)
    assert "INFERENCE_FARM_WORKER_DEVICE=cpu" in str(caught.value)


@pytest.mark.usefixtures("fake_cuda")
@pytest.mark.parametrize(("device", "index"), [("cuda", 0), ("cuda:0", 0), ("cuda:2", 2)])
def test_cuda_providers(device: str, index: int) -> None:
    cuda, cpu = providers_for(device)
    assert cuda[0] == "CUDAExecutionProvider"
    assert cuda[1]["device_id"] == index
    assert cpu == "CPUExecutionProvider"


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "cpu:0", ""])
def test_malformed_device(device: str) -> None:
    with pytest.raises(SettingsError, match="expected cpu, cuda or cuda:N"):
        providers_for(device)


def test_check_cpu() -> None:
    check_device("cpu")


@cpu_only
def test_check_cuda_without_provider() -> None:
    with pytest.raises(Unavailable, match="gpu extra"):
        check_device("cuda:0")


@cpu_only
@pytest.mark.usefixtures("fake_cuda")
@pytest.mark.filterwarnings("ignore:Specified provider")
def test_check_cuda_that_falls_back_to_cpu() -> None:
    with pytest.raises(Unavailable, match="fell back to the CPU"):
        check_device("cuda:0")


@cpu_only
@pytest.mark.usefixtures("fake_cuda")
@pytest.mark.filterwarnings("ignore:Specified provider")
def test_make_session_refuses_a_cpu_fallback(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="fell back to the CPU"):
        make_session(save(tiny_mlp(), tmp_path / "m.onnx"), "cuda", 0)


@pytest.mark.parametrize("threads", [0, 1, 2])
def test_make_session_runs(tmp_path: Path, threads: int) -> None:
    session = make_session(save(tiny_mlp(), tmp_path / "m.onnx"), "cpu", threads)
    (y,) = session.run(None, {"x": np.ones((3, 4), np.float32)})
    assert y.shape == (3, 2)
    assert session.get_providers() == ["CPUExecutionProvider"]
    options = session.get_session_options()
    assert options.intra_op_num_threads == threads
    assert options.inter_op_num_threads == 1
    assert not options.enable_cpu_mem_arena
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.log_severity_level == 2
