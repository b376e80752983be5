"""A parsed infer request checked against a model signature, and the shared shape checks."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from inference_farm.errors import InvalidInput
from inference_farm.protocol.codec import InferRequest, parse_request
from inference_farm.protocol.validation import check_shape, data_to_array, validate

SIGNATURE = {
    "inputs": [
        {
            "name": "x",
            "datatype": "FP32",
            "shape": [-1, 4],
            "kind": "tensor",
            "onnx_type": "tensor(float)",
        },
        {
            "name": "mask",
            "datatype": "BOOL",
            "shape": [],
            "kind": "tensor",
            "onnx_type": "tensor(bool)",
        },
        {
            "name": "any",
            "datatype": "INT64",
            "shape": None,
            "kind": "tensor",
            "onnx_type": "tensor(int64)",
        },
    ],
    "outputs": [
        {
            "name": "label",
            "datatype": "INT64",
            "shape": [-1],
            "kind": "tensor",
            "onnx_type": "tensor(int64)",
        },
        {
            "name": "probabilities",
            "datatype": "BYTES",
            "shape": None,
            "kind": "sequence",
            "onnx_type": "seq(map(int64,tensor(float)))",
        },
    ],
    "opset": {"ai.onnx": 17},
    "producer": "test",
}


def entry(name: str, datatype: str, shape: list[int]) -> dict:
    count = int(np.prod(shape))
    value = {"BOOL": True, "BYTES": "a"}.get(datatype, 1)
    return {"name": name, "datatype": datatype, "shape": shape, "data": [value] * count}


def request(*entries: dict, outputs: list[str] | None = None) -> InferRequest:
    document: dict[str, Any] = {"inputs": list(entries)}
    if outputs is not None:
        document["outputs"] = [{"name": name} for name in outputs]
    return parse_request(json.dumps(document).encode(), None)


GOOD = [entry("x", "FP32", [3, 4]), entry("mask", "BOOL", []), entry("any", "INT64", [2, 1, 2])]


def test_a_fitting_request_passes() -> None:
    validate(request(*GOOD), SIGNATURE)
    validate(request(*reversed(GOOD), outputs=["probabilities", "label"]), SIGNATURE)


def test_free_dims_take_any_size_including_zero() -> None:
    for rows in (0, 1, 1000):
        validate(request(entry("x", "FP32", [rows, 4]), *GOOD[1:]), SIGNATURE)


def test_an_unknown_rank_takes_any_shape() -> None:
    for shape in ([], [5], [1, 2, 3, 1]):
        validate(request(*GOOD[:2], entry("any", "INT64", shape)), SIGNATURE)


@pytest.mark.parametrize(
    ("replacement", "message"),
    [
        (
            entry("x", "FP64", [1, 4]),
            r"input 'x': expected FP32 with shape [-1, 4], got FP64 [1, 4]",
        ),
        (
            entry("x", "FP32", [1, 3]),
            r"input 'x': expected FP32 with shape [-1, 4], got FP32 [1, 3]",
        ),
        (
            entry("x", "FP32", [4]),
            r"input 'x': expected FP32 with shape [-1, 4], got FP32 [4]",
        ),
        (
            entry("x", "FP32", [1, 1, 4]),
            r"input 'x': expected FP32 with shape [-1, 4], got FP32 [1, 1, 4]",
        ),
        (
            entry("mask", "BOOL", [1]),
            r"input 'mask': expected BOOL with shape [], got BOOL [1]",
        ),
        (
            entry("any", "INT32", [2]),
            r"input 'any': expected INT64 with any shape, got INT32 [2]",
        ),
    ],
)
def test_wrong_datatype_rank_or_fixed_dim(replacement: dict, message: str) -> None:
    entries = [replacement if item["name"] == replacement["name"] else item for item in GOOD]
    with pytest.raises(InvalidInput) as caught:
        validate(request(*entries), SIGNATURE)
    assert str(caught.value) == message


def test_unknown_input_lists_the_expected_names() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate(request(*GOOD, entry("y", "FP32", [1])), SIGNATURE)
    assert str(caught.value) == (
        "input 'y' is not an input of the model; expected one of 'x', 'mask', 'any'"
    )


def test_missing_input() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate(request(GOOD[0], GOOD[2]), SIGNATURE)
    assert str(caught.value) == "input 'mask' is missing; the model needs one of 'x', 'mask', 'any'"


def test_unknown_requested_output() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate(request(*GOOD, outputs=["label", "scores"]), SIGNATURE)
    assert str(caught.value) == (
        "output 'scores' is not an output of the model; expected one of 'label', 'probabilities'"
    )


def test_a_model_without_inputs_says_so() -> None:
    with pytest.raises(InvalidInput, match="expected none"):
        validate(request(GOOD[0]), {"inputs": [], "outputs": []})


def test_check_shape_accepts_lists_of_non_negative_ints() -> None:
    assert check_shape("s", [0, 3, 1]) == [0, 3, 1]
    assert check_shape("s", []) == []
    with pytest.raises(InvalidInput, match=r"s: shape \[4, 4\] is beyond the limit of 10"):
        check_shape("s", [4, 4], limit=10)
    with pytest.raises(InvalidInput, match="got an object"):
        check_shape("s", {"a": 1})


def test_data_to_array_keeps_exact_64_bit_integers() -> None:
    data = [2**63 - 1, -(2**63)]
    assert data_to_array("v", data, "INT64", [2]).tolist() == data
    assert data_to_array("v", [2**64 - 1], "UINT64", [1]).tolist() == [2**64 - 1]
    floats = data_to_array("v", [1, 2.5, float("inf")], "FP16", [3])
    assert floats.dtype == np.float16 and floats.tolist() == [1.0, 2.5, float("inf")]
