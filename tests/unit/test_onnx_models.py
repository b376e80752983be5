"""tests/onnx_models.tiny_mlp builds a valid model that computes Relu(x @ w + b)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.onnx_models import tiny_mlp


def test_tiny_mlp_passes_checker() -> None:
    model = tiny_mlp()
    onnx.checker.check_model(model, full_check=True)
    assert [node.op_type for node in model.graph.node] == ["Gemm", "Relu"]


def test_tiny_mlp_runs_like_numpy() -> None:
    ort = pytest.importorskip("onnxruntime")
    model = tiny_mlp()
    weights = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    x = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x})
    assert y.shape == (3, 2)
    assert y.dtype == np.float32
    assert (y >= 0).all()
    expected = np.maximum(x @ weights["w"] + weights["b"], 0)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-6)


def test_tiny_mlp_seed_changes_weights() -> None:
    first = numpy_helper.to_array(tiny_mlp(seed=0).graph.initializer[0])
    second = numpy_helper.to_array(tiny_mlp(seed=1).graph.initializer[0])
    assert not np.array_equal(first, second)
