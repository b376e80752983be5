"""Providers per worker device, the start-up device check, and serving sessions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from inference_farm.errors import SettingsError, Unavailable
from inference_farm.runtime.sessions import (
    check_device,
    load_cuda_libraries,
    make_session,
    prime,
    providers_for,
)
from tests.onnx_models import save, tiny_mlp

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers()
cpu_only = pytest.mark.skipif(HAS_CUDA, reason="this onnxruntime has a CUDA provider")


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime claims a CUDA provider that it cannot really use."""
    available = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: available)


@pytest.fixture
def preloads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Calls of onnxruntime.preload_dlls, which prints what it could not load."""
    calls: list[int] = []

    def preload_dlls() -> None:
        calls.append(1)
        print("Failed to load libcublasLt.so.13: cannot open shared object file")

    load_cuda_libraries.cache_clear()
    monkeypatch.setattr(ort, "preload_dlls", preload_dlls, raising=False)
    yield calls
    load_cuda_libraries.cache_clear()


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


def test_prime_runs_a_throwaway_session(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="inference_farm.runtime.sessions"):
        prime("cpu", 1)
    assert "onnxruntime set up on cpu: +" in caplog.text


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


@cpu_only
@pytest.mark.usefixtures("fake_cuda")
@pytest.mark.filterwarnings("ignore:Specified provider")
def test_cpu_fallback_names_the_missing_gpu_index(tmp_path: Path) -> None:
    # onnxruntime-gpu falls back to the CPU, without an error, for an index with no GPU.
    with pytest.raises(Unavailable, match=r"there is no GPU 7 \(GPUs count from 0\)"):
        make_session(save(tiny_mlp(), tmp_path / "m.onnx"), "cuda:7", 0)


@pytest.mark.usefixtures("fake_cuda")
def test_a_gpu_session_that_fails_to_open_is_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def out_of_memory(*args: object, **kwargs: object) -> None:
        raise RuntimeError("CUDA failure 2: out of memory")

    monkeypatch.setattr(ort, "InferenceSession", out_of_memory)
    with pytest.raises(Unavailable, match="cannot open a session on it: CUDA failure 2") as caught:
        make_session(save(tiny_mlp(), tmp_path / "m.onnx"), "cuda:1", 0)
    assert caught.value.status == 503
    assert "worker_device is cuda:1" in str(caught.value)


@pytest.mark.usefixtures("fake_cuda")
def test_cuda_preloads_the_libraries_once_and_logs_what_it_printed(
    preloads: list[int], capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture
) -> None:
    providers_for("cuda")
    providers_for("cuda:1")
    assert preloads == [1]
    assert capsys.readouterr().out == ""
    assert "preload: Failed to load libcublasLt.so.13" in caplog.text


def test_cpu_preloads_nothing(preloads: list[int]) -> None:
    providers_for("cpu")
    assert preloads == []


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
