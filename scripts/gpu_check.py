#!/usr/bin/env python3
"""Check a worker's CUDA path on a GPU machine: provider, device choice, GPU memory, results.

Needs the gpu extra (onnxruntime-gpu) and, to read GPU memory, nvidia-ml-py. From a checkout:

    python scripts/gpu_check.py --device cuda --json gpu-check.json

Prints one PASS or FAIL line per check and exits 1 if any failed. With --device cpu it runs
the same steps on the CPU (memory read as resident set size), to try it out without a GPU.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference_farm.errors import FarmError
from inference_farm.protocol.packing import datatype_of, for_onnxruntime, pack, pack_outputs, unpack
from inference_farm.runtime.cache import SessionCache
from inference_farm.runtime.memory import rss_bytes
from inference_farm.runtime.sessions import CUDA, check_device, make_session

MIB = 2**20
FLOAT = TensorProto.FLOAT


# --- models, built with the onnx helper API ---


def _weights(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> TensorProto:
    fan_in = int(np.prod(shape[1:])) if len(shape) > 2 else shape[0]
    values = rng.standard_normal(shape) / np.sqrt(fan_in)
    return numpy_helper.from_array(values.astype(np.float32), name)


def _model(nodes: list, inputs: list, outputs: list, weights: list) -> bytes:
    graph = helper.make_graph(nodes, "gpu_check", inputs, outputs, initializer=weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def classifier(seed: int = 1) -> bytes:
    """x FP32 [N, 64] -> Gemm, Relu, Gemm, Softmax -> probs FP32 [N, 10], label INT64 [N]."""
    rng = np.random.default_rng(seed)
    shapes = {"w1": (64, 256), "b1": (256,), "w2": (256, 10), "b2": (10,)}
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("Gemm", ["r", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=-1, keepdims=0),
    ]
    outputs = [
        helper.make_tensor_value_info("probs", FLOAT, ["N", 10]),
        helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
    ]
    weights = [_weights(name, shape, rng) for name, shape in shapes.items()]
    return _model(nodes, [helper.make_tensor_value_info("x", FLOAT, ["N", 64])], outputs, weights)


def convnet(seed: int = 2) -> bytes:
    """image FP32 [N, 3, 32, 32] -> Conv 3x3, Relu, GlobalAveragePool -> features [N, 16, 1, 1]."""
    rng = np.random.default_rng(seed)
    nodes = [
        helper.make_node("Conv", ["image", "k", "kb"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["features"]),
    ]
    inputs = [helper.make_tensor_value_info("image", FLOAT, ["N", 3, 32, 32])]
    outputs = [helper.make_tensor_value_info("features", FLOAT, ["N", 16, 1, 1])]
    weights = [_weights("k", (16, 3, 3, 3), rng), _weights("kb", (16, 1), rng)]
    weights[1] = numpy_helper.from_array(numpy_helper.to_array(weights[1]).ravel(), "kb")
    return _model(nodes, inputs, outputs, weights)


def wide_mlp(width: int, layers: int, seed: int = 3) -> bytes:
    """x FP32 [N, width] -> layers MatMuls by [width, width] weights -> y FP32 [N, width]."""
    rng = np.random.default_rng(seed)
    nodes, weights = [], []
    for layer in range(layers):
        source = "x" if layer == 0 else f"h{layer - 1}"
        target = "y" if layer == layers - 1 else f"h{layer}"
        nodes.append(helper.make_node("MatMul", [source, f"w{layer}"], [target]))
        weights.append(_weights(f"w{layer}", (width, width), rng))
    inputs = [helper.make_tensor_value_info("x", FLOAT, ["N", width])]
    return _model(nodes, inputs, [helper.make_tensor_value_info("y", FLOAT, ["N", width])], weights)


# --- one infer job's round trip, as the worker does it ---


def farm_run(session: Any, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Packed inputs through JSON, decode, run, pack outputs, through JSON, decode."""
    payload = json.loads(json.dumps({n: pack(a, datatype_of(a)) for n, a in inputs.items()}))
    feeds = {name: for_onnxruntime(unpack(packed), name) for name, packed in payload.items()}
    names = [arg.name for arg in session.get_outputs()]
    results = session.run(names, feeds)
    packed = json.loads(json.dumps(pack_outputs(dict(zip(names, results, strict=True)), [])))
    return {name: unpack(item) for name, item in packed.items()}


# --- reading memory ---


class MemoryReader:
    """This process's GPU memory (device-wide where the driver gives no per-process figure)."""

    def __init__(self, device: str) -> None:
        self.kind = "rss"
        self.handle: Any = None
        if device.startswith("cuda"):
            import pynvml

            pynvml.nvmlInit()
            index = int(device.partition(":")[2] or 0)
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self.kind = "gpu"

    def used(self) -> int:
        """Bytes in use now."""
        gc.collect()
        if self.handle is None:
            return rss_bytes()
        import pynvml

        time.sleep(0.2)  # let frees that the driver does asynchronously land
        for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(self.handle):
            if proc.pid == os.getpid() and proc.usedGpuMemory:
                self.kind = "gpu (this process)"
                return int(proc.usedGpuMemory)
        self.kind = "gpu (whole device)"
        return int(pynvml.nvmlDeviceGetMemoryInfo(self.handle).used)


# --- checks; each returns (passed, numbers); passed None for a report only ---


def check_provider(device: str) -> tuple[bool, dict]:
    """onnxruntime lists the CUDA provider, and the worker's start-up device check passes."""
    import onnxruntime as ort

    info = {"onnxruntime": ort.__version__, "providers": ort.get_available_providers()}
    info["package"] = ort.__file__
    try:
        check_device(device)
        info["check_device"] = "ok"
    except FarmError as exc:
        info["check_device"] = f"{type(exc).__name__}: {exc}"
    wanted = CUDA in info["providers"] or not device.startswith("cuda")
    return wanted and info["check_device"] == "ok", info


def check_selection(device: str, model: Path) -> tuple[bool, dict]:
    """Sessions made for device and for cuda:0 run on CUDA with the farm's provider options."""
    devices = [device, "cuda:0"] if device.startswith("cuda") else [device]
    info, passed = {}, True
    for name in dict.fromkeys(devices):
        session = make_session(model, name, 0)
        providers = session.get_providers()
        options = session.get_provider_options().get(CUDA, {})
        entry = {"providers": providers}
        entry.update({k: options.get(k) for k in ("device_id", "arena_extend_strategy")})
        farm_run(session, {"x": np.ones((2, 64), np.float32)})
        if name.startswith("cuda"):
            index = name.partition(":")[2] or "0"
            passed &= providers[0] == CUDA and str(entry["device_id"]) == index
        info[name] = entry
        del session
    return passed, info


def check_parity(device: str, models: dict[str, Path]) -> tuple[bool, dict]:
    """The same requests give the same answers on device as on the CPU."""
    rng = np.random.default_rng(7)
    requests = {
        "classifier": {"x": rng.standard_normal((256, 64)).astype(np.float32)},
        "convnet": {"image": rng.standard_normal((32, 3, 32, 32)).astype(np.float32)},
    }
    info, passed = {}, True
    for name, inputs in requests.items():
        cpu = farm_run(make_session(models[name], "cpu", 0), inputs)
        dev = farm_run(make_session(models[name], device, 0), inputs)
        for output, expected in cpu.items():
            got = dev[output]
            entry = {"dtype": str(got.dtype), "shape": list(got.shape)}
            if got.dtype.kind == "f":
                ok = bool(np.allclose(got, expected, rtol=1e-3, atol=1e-4))
                entry["max_abs_diff"] = float(np.max(np.abs(got - expected)))
            else:
                ok = got.shape == expected.shape and bool(np.mean(got == expected) >= 0.99)
                entry["equal_fraction"] = float(np.mean(got == expected))
            entry["ok"] = ok
            passed &= ok
            info[f"{name}.{output}"] = entry
    return passed, info


def _cycle(cache: SessionCache, model: Path, count: int, reader: MemoryReader) -> dict:
    """Load count sessions through the cache and run each, evict one, then clear the cache."""
    batch = {"x": np.ones((512, 2048), np.float32)}
    for i in range(count):
        farm_run(cache.get((f"m{i}", "1"), model), batch)
    loaded = reader.used()
    cached = sum(entry["bytes"] for entry in cache.entries())
    cache.evict(("m0", "1"))
    after_evict = reader.used()
    cache.clear()
    return {"loaded": loaded, "cache_bytes": cached, "after_evict": after_evict,
            "after_clear": reader.used()}  # fmt: skip


def check_memory(device: str, model: Path, count: int) -> tuple[bool, dict]:
    """Memory taken by sessions loaded through the SessionCache is returned when they go."""
    reader = MemoryReader(device)
    cache = SessionCache(lambda path: make_session(path, device, 0), count, 2**40, 3600.0)
    _cycle(cache, model, 1, reader)  # the CUDA context and libraries stay: not part of this
    baseline = reader.used()
    cycles = [_cycle(cache, model, count, reader) for _ in range(2)]
    size = model.stat().st_size
    info: dict[str, Any] = {"reader": reader.kind, "model_mib": round(size / MIB, 1)}
    info["baseline_mib"] = round(baseline / MIB, 1)
    for n, cycle in enumerate(cycles):
        info[f"cycle{n}"] = {k: round((v - baseline) / MIB, 1) for k, v in cycle.items()}
        info[f"cycle{n}"]["cache_bytes"] = round(cycle["cache_bytes"] / MIB, 1)
    growth = max(cycles[0]["loaded"] - baseline, 1)
    held = max(cycle["after_clear"] for cycle in cycles) - baseline
    freed_by_evict = cycles[0]["loaded"] - cycles[0]["after_evict"]
    info["held_after_clear_mib"] = round(held / MIB, 1)
    info["freed_by_one_evict_mib"] = round(freed_by_evict / MIB, 1)
    passed = held <= max(32 * MIB, growth // 10)
    if reader.kind.startswith("gpu"):
        passed = passed and growth >= count * size and freed_by_evict >= size // 2
    return passed, info


def check_bad_index(device: str) -> tuple[bool, dict]:
    """A GPU index that does not exist is a clear Unavailable error, in a process that lives."""
    if not device.startswith("cuda"):
        return True, {"skipped": "cpu"}
    command = [sys.executable, __file__, "--probe-bad-index", "cuda:7"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return False, {"error": "the probe hung for 120 s"}
    info: dict[str, Any] = {"returncode": done.returncode, "stderr_tail": done.stderr[-800:]}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return False, info
    info.update(json.loads(lines[-1]))
    calls = [info.get("check_device"), info.get("make_session")]
    return all(c and c["error"] == "Unavailable" and "cuda:7" in c["message"] for c in calls), info


def probe_bad_index(device: str, model: Path) -> dict:
    """What check_device and make_session do with device (run in a child process)."""
    result = {}
    for name, call in (("check_device", lambda: check_device(device)),
                       ("make_session", lambda: make_session(model, device, 0))):  # fmt: skip
        try:
            call()
            result[name] = {"error": None, "message": "no error"}
        except Exception as exc:
            result[name] = {"error": type(exc).__name__, "message": str(exc)[:600]}
    return result


def check_bare_libraries(device: str) -> tuple[bool | None, dict]:
    """Whether plain onnxruntime, without the farm, finds CUDA in a fresh process (a report)."""
    if not device.startswith("cuda"):
        return None, {"skipped": "cpu"}
    code = (
        "import json, onnxruntime as ort\n"
        "from inference_farm.runtime.sessions import probe_model\n"
        "s = ort.InferenceSession(probe_model(), providers=['CUDAExecutionProvider'])\n"
        "print(json.dumps(s.get_providers()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), *sys.path])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)  # fmt: skip
    lines = done.stdout.strip().splitlines()
    info = {"returncode": done.returncode, "providers": lines[-1] if lines else None,
            "stderr_tail": done.stderr[-600:]}  # fmt: skip
    return None, info


def _models(folder: Path, width: int, layers: int) -> dict[str, Path]:
    paths = {}
    for name, data in (("classifier", classifier()), ("convnet", convnet()),
                       ("wide", wide_mlp(width, layers))):  # fmt: skip
        paths[name] = folder / f"{name}.onnx"
        paths[name].write_bytes(data)
    return paths


def run_checks(args: argparse.Namespace, folder: Path) -> dict:
    """Every check in order; a check that raises counts as failed."""
    models = _models(folder, args.width, args.layers)
    checks = [
        ("bare_libraries", lambda: check_bare_libraries(args.device)),
        ("provider", lambda: check_provider(args.device)),
        ("selection", lambda: check_selection(args.device, models["classifier"])),
        ("bad_index", lambda: check_bad_index(args.device)),
        ("parity", lambda: check_parity(args.device, models)),
        ("memory", lambda: check_memory(args.device, models["wide"], args.models)),
    ]
    summary: dict[str, Any] = {"device": args.device}
    for name, check in checks:
        started = time.perf_counter()
        try:
            passed, info = check()
        except Exception as exc:
            passed, info = False, {"exception": f"{type(exc).__name__}: {exc}"[:1000]}
        info["seconds"] = round(time.perf_counter() - started, 2)
        summary[name] = {"passed": passed, **info}
        word = "INFO" if passed is None else "PASS" if passed else "FAIL"
        print(f"{word} {name}: {json.dumps(info)}", flush=True)
    summary["passed"] = all(summary[name]["passed"] is not False for name, _ in checks)
    return summary


def main() -> int:
    """Run the checks and print PASS/FAIL lines; exit 1 if any failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cpu, cuda or cuda:N (default cuda)")
    parser.add_argument("--json", type=Path, help="also write the summary to this file")
    parser.add_argument("--models", type=int, default=4, help="sessions loaded at once")
    parser.add_argument("--width", type=int, default=2048, help="memory model width")
    parser.add_argument("--layers", type=int, default=4, help="memory model MatMuls")
    parser.add_argument("--probe-bad-index", metavar="DEVICE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.probe_bad_index:
            model = _models(Path(tmp), 8, 1)["classifier"]
            print(json.dumps(probe_bad_index(args.probe_bad_index, model)))
            return 0
        summary = run_checks(args, Path(tmp))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print("ALL PASSED" if summary["passed"] else "SOME CHECKS FAILED", flush=True)
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
