"""Small ONNX models that the tests build with the onnx helper API."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def tiny_mlp(features: int = 4, outputs: int = 2, seed: int = 0) -> onnx.ModelProto:
    """x FP32 [N, features] -> Gemm -> Relu -> y FP32 [N, outputs], with a free batch dim."""
    rng = np.random.default_rng(seed)
    weight = numpy_helper.from_array(rng.standard_normal((features, outputs), np.float32), "w")
    bias = numpy_helper.from_array(rng.standard_normal(outputs).astype(np.float32), "b")
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["x", "w", "b"], ["h"]),
            helper.make_node("Relu", ["h"], ["y"]),
        ],
        "tiny_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", outputs])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def save(model: onnx.ModelProto, path: Path) -> Path:
    """Write model to path and return the path."""
    onnx.save(model, str(path))
    return path


def model_of(graph: onnx.GraphProto, ml: bool = False, check: bool = True) -> onnx.ModelProto:
    """A model around graph with opset 17 (and ai.onnx.ml 3 when ml), ir_version 8."""
    opsets = [helper.make_opsetid("", OPSET)]
    if ml:
        opsets.append(helper.make_opsetid("ai.onnx.ml", 3))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="tests")
    model.ir_version = 8
    if check:
        onnx.checker.check_model(model)
    return model


def multi_io() -> onnx.ModelProto:
    """a FP32 [N, 3] and b INT64 [N, 3] -> total FP32 (a + b) and count INT64 (b + a)."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["b"], ["b_float"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["a", "b_float"], ["total"]),
            helper.make_node("Cast", ["a"], ["a_int"], to=TensorProto.INT64),
            helper.make_node("Add", ["b", "a_int"], ["count"]),
        ],
        "multi_io",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("b", TensorProto.INT64, ["N", 3]),
        ],
        [
            helper.make_tensor_value_info("total", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("count", TensorProto.INT64, ["N", 3]),
        ],
    )
    return model_of(graph)


def fp16_model() -> onnx.ModelProto:
    """x FP16 [N, 2] -> y FP16 [N, 2] = x + x."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        "fp16_model",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT16, ["N", 2])],
    )
    return model_of(graph)


def bool_model() -> onnx.ModelProto:
    """flag BOOL [N] -> negated BOOL [N] via Not."""
    graph = helper.make_graph(
        [helper.make_node("Not", ["flag"], ["negated"])],
        "bool_model",
        [helper.make_tensor_value_info("flag", TensorProto.BOOL, ["N"])],
        [helper.make_tensor_value_info("negated", TensorProto.BOOL, ["N"])],
    )
    return model_of(graph)


def int64_scalar() -> onnx.ModelProto:
    """x FP32 [N, 2] and offset INT64 scalar -> y FP32 [N, 2] = x + offset."""
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["offset"], ["offset_float"], to=TensorProto.FLOAT),
            helper.make_node("Add", ["x", "offset_float"], ["y"]),
        ],
        "int64_scalar",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2]),
            helper.make_tensor_value_info("offset", TensorProto.INT64, []),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    )
    return model_of(graph)


def fixed_no_batch() -> onnx.ModelProto:
    """x FP32 [3, 4] with fixed dims -> y FP32 [3, 4] = Relu(x)."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "fixed_no_batch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])],
    )
    return model_of(graph)


def sequence_output() -> onnx.ModelProto:
    """x FP32 [N, 2] -> label INT64 [N] (ArgMax) and probs seq(map(int64, float)) via ZipMap."""
    graph = helper.make_graph(
        [
            helper.make_node("ArgMax", ["x"], ["label"], axis=1, keepdims=0),
            helper.make_node(
                "ZipMap", ["x"], ["probs"], domain="ai.onnx.ml", classlabels_int64s=[0, 1]
            ),
        ],
        "sequence_output",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]),
            helper.make_value_info(
                "probs",
                helper.make_sequence_type_proto(
                    helper.make_map_type_proto(
                        TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, [])
                    )
                ),
            ),
        ],
    )
    return model_of(graph, ml=True)


def sequence_input() -> onnx.ModelProto:
    """items seq(FP32 [N]) -> first FP32 [N] via SequenceAt; a non-tensor input."""
    position = numpy_helper.from_array(np.array(0, np.int64), "position")
    graph = helper.make_graph(
        [helper.make_node("SequenceAt", ["items", "position"], ["first"])],
        "sequence_input",
        [
            helper.make_value_info(
                "items",
                helper.make_sequence_type_proto(
                    helper.make_tensor_type_proto(TensorProto.FLOAT, ["N"])
                ),
            )
        ],
        [helper.make_tensor_value_info("first", TensorProto.FLOAT, ["N"])],
        initializer=[position],
    )
    return model_of(graph)


def external_data(folder: Path, location: str = "w.bin") -> Path:
    """tiny_mlp saved to folder/external.onnx with its weights in folder/location."""
    path = folder / "external.onnx"
    onnx.save_model(
        tiny_mlp(),
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=0,
    )
    return path


def unknown_op() -> onnx.ModelProto:
    """x FP32 [N, 2] -> Frobnicate (domain com.example, which onnxruntime lacks) -> y."""
    graph = helper.make_graph(
        [helper.make_node("Frobnicate", ["x"], ["y"], domain="com.example")],
        "unknown_op",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("com.example", 1)],
        producer_name="tests",
    )
    model.ir_version = 8
    return model


def failing_run() -> onnx.ModelProto:
    """x FP32 [N, 2] -> Gather of row 5 along axis 0; loads, but fails on a batch of one."""
    index = numpy_helper.from_array(np.array([5], np.int64), "index")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["x", "index"], ["y"], axis=0)],
        "failing_run",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=[index],
    )
    return model_of(graph)


def column_sum() -> onnx.ModelProto:
    """x FP32 [N, 2] -> ReduceSum over dim 0 -> y [1, 2]: an output that ignores the batch."""
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [0])
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=1)],
        "column_sum",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=[axes],
    )
    return model_of(graph)


def big_mlp(width: int = 2048, layers: int = 4, seed: int = 0) -> onnx.ModelProto:
    """x FP32 [N, width] -> layers MatMuls by [width, width] weights -> y; default 64 MiB.

    Weights of 16 MiB sit below glibc's largest mmap threshold, so unlike one huge tensor
    they land in the heap, which is where freed memory tends to stay in the process.
    """
    rng = np.random.default_rng(seed)
    weights, nodes = [], []
    for layer in range(layers):
        weight = rng.standard_normal((width, width), np.float32)
        weights.append(numpy_helper.from_array(weight, f"w{layer}"))
        source = "x" if layer == 0 else f"h{layer - 1}"
        target = "y" if layer == layers - 1 else f"h{layer}"
        nodes.append(helper.make_node("MatMul", [source, f"w{layer}"], [target]))
    graph = helper.make_graph(
        nodes,
        "big_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])],
        initializer=weights,
    )
    return model_of(graph)


def _matmul_chain(name: str, weight: np.ndarray, layers: int) -> onnx.ModelProto:
    """x FP32 [1, width] expanded to [width, width], then `layers` MatMuls by weight, summed."""
    width = weight.shape[0]
    nodes = [helper.make_node("Expand", ["x", "shape"], ["h0"])]
    for layer in range(layers):
        nodes.append(helper.make_node("MatMul", [f"h{layer}", "w"], [f"h{layer + 1}"]))
    nodes.append(helper.make_node("ReduceSum", [f"h{layers}"], ["y"], keepdims=1))
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        initializer=[
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(np.array([width, width], dtype=np.int64), "shape"),
        ],
    )
    return model_of(graph)


def slow_model(width: int = 1536, layers: int = 64) -> onnx.ModelProto:
    """x FP32 [1, width] expanded to [width, width], then `layers` MatMuls: seconds of work."""
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((width, width)) / width).astype(np.float32)
    return _matmul_chain("slow_model", weight, layers)


ALL_TYPES = {
    "BOOL": TensorProto.BOOL,
    "INT8": TensorProto.INT8,
    "INT16": TensorProto.INT16,
    "INT32": TensorProto.INT32,
    "INT64": TensorProto.INT64,
    "UINT8": TensorProto.UINT8,
    "UINT16": TensorProto.UINT16,
    "UINT32": TensorProto.UINT32,
    "UINT64": TensorProto.UINT64,
    "FP16": TensorProto.FLOAT16,
    "FP32": TensorProto.FLOAT,
    "FP64": TensorProto.DOUBLE,
    "BYTES": TensorProto.STRING,
}


def all_types(names: Iterable[str] = ALL_TYPES) -> onnx.ModelProto:
    """One Identity per Open Inference Protocol datatype (of names): in_<TYPE> [N, 2] ->
    out_<TYPE>."""
    nodes, inputs, outputs = [], [], []
    for name in names:
        elem = ALL_TYPES[name]
        nodes.append(helper.make_node("Identity", [f"in_{name}"], [f"out_{name}"]))
        inputs.append(helper.make_tensor_value_info(f"in_{name}", elem, ["N", 2]))
        outputs.append(helper.make_tensor_value_info(f"out_{name}", elem, ["N", 2]))
    return model_of(helper.make_graph(nodes, "all_types", inputs, outputs))


def steady_model(width: int = 1024, layers: int = 96) -> onnx.ModelProto:
    """x FP32 [1, width] expanded to [width, width], then `layers` MatMuls by a permutation:
    about 1.5 s of work on 2 cores, whose values never shrink into slow denormals, so that
    y [1, 1] is exactly width * sum(x) for small integer x."""
    weight = np.roll(np.eye(width, dtype=np.float32), 1, axis=1)
    return _matmul_chain("steady_model", weight, layers)
