"""onnxruntime sessions: execution providers per worker device, and session options."""

from __future__ import annotations

import contextlib
import io
import logging
import pathlib
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from inference_farm.errors import SettingsError, Unavailable
from inference_farm.runtime.memory import release_freed_memory, rss_bytes

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
WARNING = 2  # onnxruntime's severity levels: 0 verbose, 1 info, 2 warning, 3 error


@dataclass(frozen=True)
class ModelFiles:
    """What a session loads: the .onnx file, its size with any external data, its samples."""

    path: pathlib.Path
    size_bytes: int
    warmup: dict[str, Any] | None = None
    label: str = ""  # the model and version, for logs


def _cuda_index(device: str) -> int | None:
    """None for cpu, else the GPU index of cuda / cuda:N; SettingsError for anything else."""
    kind, _, index = device.lower().partition(":")
    if kind == "cpu" and not index:
        return None
    if kind == "cuda" and (not index or index.isdigit()):
        return int(index or 0)
    raise SettingsError(f"invalid worker_device {device!r}: expected cpu, cuda or cuda:N")


def providers_for(device: str) -> list:
    """The onnxruntime providers list for a worker device; Unavailable if it has no provider."""
    index = _cuda_index(device)
    if index is None:
        return [CPU]
    import onnxruntime as ort

    if CUDA not in ort.get_available_providers():
        raise Unavailable(
            f"worker_device is {device} but onnxruntime has no CUDA provider: install the gpu "
            "extra (onnxruntime-gpu) or set INFERENCE_FARM_WORKER_DEVICE=cpu"
        )
    load_cuda_libraries()
    # Grow the GPU arena by what is asked, not by powers of two, so sessions hold no slack.
    options = {"device_id": index, "arena_extend_strategy": "kSameAsRequested"}
    return [(CUDA, options), CPU]


@lru_cache(maxsize=1)
def load_cuda_libraries() -> None:
    """Load CUDA and cuDNN from the nvidia-* wheels beside onnxruntime-gpu, where they are."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)  # onnxruntime 1.21 and later
    if preload is None:
        return
    # Without this, onnxruntime finds pip-installed CUDA libraries only on LD_LIBRARY_PATH.
    # preload_dlls prints what it could not load; libraries found elsewhere still work.
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            preload()
    except Exception as exc:
        log.warning("onnxruntime could not preload the CUDA libraries: %s", exc)
    for line in printed.getvalue().splitlines():
        log.warning("onnxruntime preload: %s", line)


def probe_model() -> bytes:
    """A serialized one-node model (Relu of FP32 [1]) for trying out a device."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def check_device(device: str) -> None:
    """Raise Unavailable unless sessions on device can really be created (a worker's start-up)."""
    providers = providers_for(device)
    if _cuda_index(device) is None:
        return
    import onnxruntime as ort

    # A bad GPU index fails here, and missing CUDA/cuDNN libraries show as a CPU fallback.
    try:
        session = ort.InferenceSession(probe_model(), providers=providers)
    except Exception as exc:
        raise Unavailable(
            f"worker_device is {device} but onnxruntime cannot use it: {exc}"
        ) from exc
    _require_cuda(session, device)


def prime(device: str, intra_op_threads: int) -> None:
    """Pay onnxruntime's one-time cost in this process now: a throwaway session, run once.

    The first session of a process maps and touches onnxruntime's code and sets up its
    process-wide state, none of which is ever given back (measured: +31 MiB, 21 of them
    library pages, on a CPU worker). Paid at start-up, it is part of a ready worker's memory,
    and the first model loaded is not charged for it against cache_max_bytes.
    """
    import numpy as np

    before = rss_bytes()
    import onnxruntime as ort

    options = session_options(intra_op_threads)
    session = ort.InferenceSession(
        probe_model(), sess_options=options, providers=providers_for(device)
    )
    session.run(None, {"x": np.ones(1, np.float32)})
    del session
    release_freed_memory()
    log.info("onnxruntime set up on %s: +%.1f MiB resident", device, (rss_bytes() - before) / 2**20)


def _require_cuda(session: Any, device: str) -> None:
    # onnxruntime also falls back silently for a GPU index that does not exist.
    if CUDA not in session.get_providers():
        raise Unavailable(
            f"worker_device is {device} but onnxruntime fell back to the CPU: there is no GPU "
            f"{_cuda_index(device)} (GPUs count from 0), or the CUDA or cuDNN libraries could "
            "not be loaded (see the onnxruntime log above)"
        )


def session_options(intra_op_threads: int, spinning: bool = False) -> Any:
    """SessionOptions for serving: bounded threads, full graph optimisation, no CPU arena."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # The arena keeps a session's peak activations for as long as it lives (measured: +66 MiB
    # held after one batch of 4096 rows on a 64 MiB model), memory the cache's byte budget
    # never sees; without it nothing stays behind and runs measured no slower.
    options.enable_cpu_mem_arena = False
    options.log_severity_level = WARNING
    # Idle intra-op threads spin for work by default, burning cores that the API and the
    # broker on the same machine need (measured: a worker at a full core while mostly idle).
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return options


def make_session(path: pathlib.Path, device: str, intra_op_threads: int) -> Any:
    """An onnxruntime InferenceSession for the model at path on device."""
    import onnxruntime as ort

    providers = providers_for(device)
    options = session_options(intra_op_threads)
    if _cuda_index(device) is None:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    # Models are checked on the CPU at upload, so a failure here is the GPU's (out of memory,
    # a lost device): the worker's fault, not the request's.
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as exc:
        raise Unavailable(
            f"worker_device is {device} but onnxruntime cannot open a session on it: {exc}"
        ) from exc
    _require_cuda(session, device)
    return session


def warm(session: Any, samples: dict[str, Any] | None, what: str) -> None:
    """Run the version's sample inputs once, so the first request does not pay for it."""
    if not samples:
        return
    started = time.perf_counter()
    try:
        session.run(None, samples)
    except Exception as exc:  # validation ran them; a failure here is worth a line, no more
        log.warning("warming %s with its samples failed: %s", what, exc)
        return
    log.info("warmed %s with its samples in %.0f ms", what, (time.perf_counter() - started) * 1000)
