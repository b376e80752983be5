"""inspect_model reads signatures in a child process and rejects bad models with a reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import psutil
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import set_external_data

from inference_farm.errors import InvalidInput, ModelRejected
from inference_farm.runtime import inspect
from inference_farm.runtime.inspect import inspect_model, ort_message
from tests import onnx_models, real_shapes
from tests.onnx_models import save

TIMEOUT = 60.0


def tensor(name: str, datatype: str, shape: list[int], onnx_type: str) -> dict:
    return {
        "name": name,
        "datatype": datatype,
        "shape": shape,
        "kind": "tensor",
        "onnx_type": onnx_type,
    }


FP32, INT64 = "tensor(float)", "tensor(int64)"
SIGNATURES = {
    "tiny_mlp": (
        [tensor("x", "FP32", [-1, 4], FP32)],
        [tensor("y", "FP32", [-1, 2], FP32)],
        True,
    ),
    "multi_io": (
        [tensor("a", "FP32", [-1, 3], FP32), tensor("b", "INT64", [-1, 3], INT64)],
        [tensor("total", "FP32", [-1, 3], FP32), tensor("count", "INT64", [-1, 3], INT64)],
        True,
    ),
    "fp16_model": (
        [tensor("x", "FP16", [-1, 2], "tensor(float16)")],
        [tensor("y", "FP16", [-1, 2], "tensor(float16)")],
        True,
    ),
    "bool_model": (
        [tensor("flag", "BOOL", [-1], "tensor(bool)")],
        [tensor("negated", "BOOL", [-1], "tensor(bool)")],
        True,
    ),
    "int64_scalar": (
        [tensor("x", "FP32", [-1, 2], FP32), tensor("offset", "INT64", [], INT64)],
        [tensor("y", "FP32", [-1, 2], FP32)],
        False,
    ),
    "fixed_no_batch": (
        [tensor("x", "FP32", [3, 4], FP32)],
        [tensor("y", "FP32", [3, 4], FP32)],
        False,
    ),
    "sequence_output": (
        [tensor("x", "FP32", [-1, 2], FP32)],
        [
            tensor("label", "INT64", [-1], INT64),
            {
                "name": "probs",
                "datatype": "BYTES",
                "shape": None,
                "kind": "sequence",
                "onnx_type": "seq(map(int64,tensor(float)))",
            },
        ],
        True,
    ),
}


def rejection(path: Path, timeout: float = TIMEOUT) -> str:
    """The reason inspect_model gives for rejecting path."""
    with pytest.raises(ModelRejected) as caught:
        inspect_model(path, timeout)
    reason = str(caught.value)
    assert "\n" not in reason
    return reason


@pytest.mark.parametrize("builder", sorted(SIGNATURES))
def test_signature(tmp_path: Path, builder: str) -> None:
    inputs, outputs, batchable = SIGNATURES[builder]
    path = save(getattr(onnx_models, builder)(), tmp_path / "model.onnx")
    result = inspect_model(path, TIMEOUT)
    assert result["signature"]["inputs"] == inputs
    assert result["signature"]["outputs"] == outputs
    assert result["batchable"] is batchable
    assert result["size_bytes"] == path.stat().st_size
    assert result["load_time_ms"] > 0
    assert result["memory_bytes"] >= 0
    assert result["warnings"] == []
    assert set(result) == {
        "signature", "batchable", "load_time_ms", "memory_bytes", "size_bytes", "warnings",
        "model_info",
    }  # fmt: skip


def test_opset_and_producer(tmp_path: Path) -> None:
    signature = inspect_model(save(onnx_models.sequence_output(), tmp_path / "m.onnx"), TIMEOUT)[
        "signature"
    ]
    assert signature["opset"] == {"ai.onnx": 17, "ai.onnx.ml": 3}
    assert signature["producer"] == "tests"


def test_result_is_json_plain(tmp_path: Path) -> None:
    result = inspect_model(save(onnx_models.multi_io(), tmp_path / "m.onnx"), TIMEOUT)
    assert json.loads(json.dumps(result)) == result


def test_memory_counts_the_weights(tmp_path: Path) -> None:
    path = save(onnx_models.big_mlp(width=1024, layers=4), tmp_path / "big.onnx")
    weights = 4 * 1024 * 1024 * 4
    result = inspect_model(path, TIMEOUT)
    # onnxruntime keeps one copy of the weights (the file's is freed) plus small buffers.
    assert 0.9 * weights <= result["memory_bytes"] <= 2 * weights
    assert result["size_bytes"] > weights


def unknown_rank_output() -> onnx.ModelProto:
    """x FP32 [N, 2] -> y = Relu(x) and total = ReduceSum(x), neither declaring a shape."""
    graph = helper.make_graph(
        [
            helper.make_node("Relu", ["x"], ["y"]),
            helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0),
        ],
        "unknown_rank_output",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
            helper.make_tensor_value_info("total", TensorProto.FLOAT, None),
        ],
    )
    return onnx_models.model_of(graph, check=False)  # the checker wants declared shapes


def test_undeclared_output_ranks(tmp_path: Path) -> None:
    result = inspect_model(save(unknown_rank_output(), tmp_path / "m.onnx"), TIMEOUT)
    y, total = result["signature"]["outputs"]
    assert y["shape"] == [-1, 2]  # onnxruntime infers it
    assert total["shape"] == []  # only the synthetic run tells
    assert result["batchable"] is False


def test_rejection_is_invalid_input() -> None:
    assert issubclass(ModelRejected, InvalidInput)
    assert ModelRejected("x").status == 400


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    assert rejection(path) == "the file is empty"


@pytest.mark.parametrize(
    "content",
    [
        np.random.default_rng(0).bytes(4096),
        b"this is not a model\n",
        onnx_models.tiny_mlp().SerializeToString()[:80],
    ],
    ids=["random", "text", "truncated"],
)
def test_not_onnx(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    assert rejection(path).startswith("not a valid ONNX model: ")


def test_unknown_operator(tmp_path: Path) -> None:
    reason = rejection(save(onnx_models.unknown_op(), tmp_path / "m.onnx"))
    assert reason == (
        "onnxruntime cannot load the model: Fatal error: "
        "com.example:Frobnicate(-1) is not a registered function/op"
    )


def test_opset_too_new(tmp_path: Path) -> None:
    model = onnx_models.tiny_mlp()
    model.opset_import[0].version = 99
    reason = rejection(save(model, tmp_path / "m.onnx"))
    assert reason.startswith("onnxruntime cannot load the model: ")
    assert "Opset 99" in reason
    assert "official support for domain ai.onnx" in reason  # the end survives shortening
    assert "onnxruntime_src" not in reason
    assert "::" not in reason
    assert len(reason) <= len("onnxruntime cannot load the model: ") + inspect.MAX_REASON


def test_external_data(tmp_path: Path) -> None:
    reason = rejection(onnx_models.external_data(tmp_path))
    assert reason == (
        "model references external data file 'w.bin'; a model with external data must be "
        "uploaded as one archive (.zip or .tar[.gz]) holding the .onnx file and its data files"
    )


def test_external_data_is_not_read(tmp_path: Path) -> None:
    model = onnx.load(str(onnx_models.external_data(tmp_path)), load_external_data=False)
    for initializer in model.graph.initializer:
        for entry in initializer.external_data:
            if entry.key == "location":
                entry.value = "../elsewhere/w.bin"
    # onnxruntime would say that the path leaves the model's folder or does not exist.
    reason = rejection(save(model, tmp_path / "moved.onnx"))
    assert reason.startswith("model references external data file '../elsewhere/w.bin'")


def external_in_subgraph(where: str) -> onnx.ModelProto:
    """An If whose then-branch has an external tensor as a Constant or as an initializer."""
    outside = numpy_helper.from_array(np.ones(2, np.float32), "c")
    set_external_data(outside, location=f"{where}.bin")
    outside.ClearField("raw_data")
    if where == "constant":
        nodes, initializer = [helper.make_node("Constant", [], ["c"], value=outside)], []
    else:
        nodes, initializer = [helper.make_node("Identity", ["c"], ["c_out"])], [outside]
    output = "c" if where == "constant" else "c_out"
    then_branch = helper.make_graph(
        nodes,
        "then",
        [],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [2])],
        initializer=initializer,
    )
    else_branch = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["e"])],
        "else",
        [],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, [2])],
    )
    graph = helper.make_graph(
        [helper.make_node("If", ["flag"], ["y"], then_branch=then_branch, else_branch=else_branch)],
        "external_in_subgraph",
        [
            helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    return onnx_models.model_of(graph, check=False)


@pytest.mark.parametrize("where", ["constant", "initializer"])
def test_external_data_in_subgraph(tmp_path: Path, where: str) -> None:
    reason = rejection(save(external_in_subgraph(where), tmp_path / "m.onnx"))
    assert reason.startswith(f"model references external data file '{where}.bin'")


def test_external_data_in_local_function(tmp_path: Path) -> None:
    outside = numpy_helper.from_array(np.ones(2, np.float32), "c")
    set_external_data(outside, location="function.bin")
    outside.ClearField("raw_data")
    function = helper.make_function(
        "com.test",
        "MakeC",
        [],
        ["c"],
        [helper.make_node("Constant", [], ["c"], value=outside)],
        [helper.make_opsetid("", onnx_models.OPSET)],
    )
    graph = helper.make_graph(
        [helper.make_node("MakeC", [], ["y"], domain="com.test")],
        "external_in_function",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
    )
    model = onnx_models.model_of(graph, check=False)
    model.functions.append(function)
    model.opset_import.append(helper.make_opsetid("com.test", 1))
    reason = rejection(save(model, tmp_path / "m.onnx"))
    assert reason.startswith("model references external data file 'function.bin'")


def test_sequence_input(tmp_path: Path) -> None:
    reason = rejection(save(onnx_models.sequence_input(), tmp_path / "m.onnx"))
    assert reason == "input 'items' is a sequence; only tensor inputs are supported"


def test_bfloat16_input(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.FLOAT)],
        "bf16",
        [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])],
    )
    reason = rejection(save(onnx_models.model_of(graph), tmp_path / "m.onnx"))
    assert reason == "input 'x' has type tensor(bfloat16), which the farm cannot serve"


def test_a_fixed_shape_model_that_fails_on_its_own_shapes_is_refused(tmp_path: Path) -> None:
    reason = rejection(save(real_shapes.fixed_shape_broken(), tmp_path / "m.onnx"))
    assert reason.startswith("running the model on its own declared input shapes failed: ")
    assert "reshape" in reason


def test_sizes_past_one_are_tried_for_free_dims(tmp_path: Path) -> None:
    # A Gather of row 5 fails on batches under 6; the probe finds a batch that runs.
    result = inspect_model(save(onnx_models.failing_run(), tmp_path / "m.onnx"), TIMEOUT)
    assert result["warnings"] == []
    assert result["signature"]["inputs"][0]["shape"] == [-1, 2]


@pytest.mark.parametrize("builder", ["reflect_pad_audio", "stride32_detector"])
def test_models_that_refuse_size_one_are_served(tmp_path: Path, builder: str) -> None:
    result = inspect_model(save(real_shapes.BUILDERS[builder](), tmp_path / "m.onnx"), TIMEOUT)
    assert result["warnings"] == []


def test_a_model_no_made_up_input_runs_is_served_with_a_warning(tmp_path: Path) -> None:
    # Gather of row 5000 of a free dim: no trial is that long, yet real inputs could be.
    result = inspect_model(save(real_shapes.long_only(), tmp_path / "m.onnx"), TIMEOUT)
    (warning,) = result["warnings"]
    assert warning.startswith("no smoke run succeeded: ")
    assert "x [1, 1]: " in warning and "indices element out of data bounds" in warning
    assert "multipart field warmup" in warning
    assert result["memory_bytes"] >= 0


def test_model_info_is_what_the_file_says(tmp_path: Path) -> None:
    model = onnx_models.tiny_mlp()
    model.producer_name, model.producer_version = "exporter", "2.1"
    model.doc_string = "d" * 10_000
    onnx.helper.set_model_props(model, {"author": "team", "labels": "cat,dog"})
    info = inspect_model(save(model, tmp_path / "m.onnx"), TIMEOUT)["model_info"]
    assert info["producer_name"] == "exporter" and info["producer_version"] == "2.1"
    assert info["opset_imports"] == {"ai.onnx": 17}
    assert info["metadata_props"] == {"author": "team", "labels": "cat,dog"}
    assert len(info["doc_string"]) == inspect.MAX_DOC and info["doc_string"].endswith("…")


def fake_child(monkeypatch: pytest.MonkeyPatch, code: str) -> None:
    """Make inspect_model run python -c code instead of the real check."""
    monkeypatch.setattr(inspect, "child_command", lambda *_args: [sys.executable, "-c", code])


def test_timeout_rejects_and_ends_the_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_child(monkeypatch, "import time; time.sleep(30)")
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    reason = rejection(save(onnx_models.tiny_mlp(), tmp_path / "m.onnx"), timeout=1.0)
    assert reason == "validation took longer than 1s"
    left = [c for c in psutil.Process().children(recursive=True) if c.pid not in before]
    assert left == [], "the child outlived its timeout"


def test_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_child(
        monkeypatch,
        "import os, signal, sys; print('loading', file=sys.stderr, flush=True); "
        "os.kill(os.getpid(), signal.SIGSEGV)",
    )
    reason = rejection(save(onnx_models.tiny_mlp(), tmp_path / "m.onnx"))
    assert reason == "onnxruntime crashed while checking the model (signal 11, SIGSEGV): loading"


def test_garbage_answer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_child(monkeypatch, "import sys; print('hello'); sys.exit('first\\nsecond line')")
    reason = rejection(save(onnx_models.tiny_mlp(), tmp_path / "m.onnx"))
    assert reason == "the model check ended without a result (exit code 1): second line"


def test_child_reason_is_passed_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake_child(monkeypatch, 'print(\'{"ok": false, "reason": "too odd"}\')')
    assert rejection(save(onnx_models.tiny_mlp(), tmp_path / "m.onnx")) == "too odd"


def test_child_runs_in_an_empty_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = "import json, os; print(json.dumps({'ok': True, 'cwd': os.listdir('.')}))"
    fake_child(monkeypatch, code)
    assert inspect_model(save(onnx_models.tiny_mlp(), tmp_path / "m.onnx"), TIMEOUT) == {"cwd": []}


def test_module_prints_one_json_line(tmp_path: Path) -> None:
    path = save(onnx_models.fp16_model(), tmp_path / "m.onnx")
    done = subprocess.run(
        [sys.executable, "-m", "inference_farm.runtime.inspect", str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=TIMEOUT,
    )
    (line,) = done.stdout.splitlines()
    answer = json.loads(line)
    assert answer["ok"] is True
    assert answer["signature"]["inputs"][0]["datatype"] == "FP16"


def test_ort_message_plain() -> None:
    error = RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : bad\n  input  shape")
    assert ort_message(error) == "bad input shape"


def test_ort_message_drops_source_and_signature() -> None:
    error = RuntimeError(
        "[ONNXRuntimeError] : 1 : FAIL : Load model from /data/m.onnx failed:"
        "/src/onnxruntime/core/graph/model.cc:256 onnxruntime::Model::Model(onnx::ModelProto&&, "
        "const std::function<void(int)>&) Unsupported model IR version: 99"
    )
    assert ort_message(error) == "Unsupported model IR version: 99"


def test_ort_message_is_shortened() -> None:
    message = ort_message(RuntimeError("start " + "x" * 1000 + " end"))
    assert len(message) <= inspect.MAX_REASON
    assert message.startswith("start ")
    assert message.endswith(" end")
