"""The two benchmark models, built with the onnx helper API from a fixed seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
BATCH_DIM = "N"
# name: (input width, hidden layer widths, output width, seed)
SPECS: dict[str, tuple[int, tuple[int, ...], int, int]] = {
    "tiny": (64, (256,), 10, 1),
    "heavy": (1024, (1024,) * 6, 10, 2),
}


def _gemm(
    rng: np.random.Generator, prefix: str, source: str, fan_in: int, fan_out: int, out: str
) -> tuple[onnx.NodeProto, list[onnx.TensorProto]]:
    # He-scaled weights keep activations near 1 through deep stacks, so tolerances stay relative.
    weight = rng.standard_normal((fan_in, fan_out), np.float32) * np.float32(np.sqrt(2 / fan_in))
    bias = rng.standard_normal(fan_out, np.float32) * np.float32(0.1)
    tensors = [
        numpy_helper.from_array(weight.astype(np.float32), f"{prefix}_w"),
        numpy_helper.from_array(bias.astype(np.float32), f"{prefix}_b"),
    ]
    node = helper.make_node("Gemm", [source, f"{prefix}_w", f"{prefix}_b"], [out])
    return node, tensors


def mlp(name: str) -> onnx.ModelProto:
    """The model called name: x FP32 [N, in] -> (Gemm + Relu) per hidden layer -> Gemm -> y."""
    width_in, hidden, width_out, seed = SPECS[name]
    rng = np.random.default_rng(seed)
    nodes: list[onnx.NodeProto] = []
    weights: list[onnx.TensorProto] = []
    source, fan_in = "x", width_in
    for index, width in enumerate(hidden):
        node, tensors = _gemm(rng, f"fc{index}", source, fan_in, width, f"fc{index}_out")
        relu = helper.make_node("Relu", [node.output[0]], [f"relu{index}"])
        nodes += [node, relu]
        weights += tensors
        source, fan_in = relu.output[0], width
    node, tensors = _gemm(rng, "head", source, fan_in, width_out, "y")
    nodes.append(node)
    weights += tensors
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [BATCH_DIM, width_in])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [BATCH_DIM, width_out])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    model.producer_name = "inference-farm-benchmarks"
    onnx.checker.check_model(model)
    return model


def write_models(folder: Path, names: tuple[str, ...] = tuple(SPECS)) -> dict[str, Path]:
    """Write each named model to folder/<name>.onnx and return the paths by name."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in names:
        paths[name] = folder / f"{name}.onnx"
        onnx.save(mlp(name), str(paths[name]))
    return paths
