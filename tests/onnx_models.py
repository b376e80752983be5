"""Small ONNX models that the tests build with the onnx helper API."""

from __future__ import annotations

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
