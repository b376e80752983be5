"""onnxruntime type strings map to OIP datatypes, numpy dtypes and kinds."""

from __future__ import annotations

import numpy as np
import pytest

from inference_farm.protocol.datatypes import NUMPY_FROM_OIP, OIP_FROM_ORT, kind_of


@pytest.mark.parametrize(
    ("ort_type", "oip"),
    [
        ("tensor(bool)", "BOOL"),
        ("tensor(int8)", "INT8"),
        ("tensor(int64)", "INT64"),
        ("tensor(uint8)", "UINT8"),
        ("tensor(uint64)", "UINT64"),
        ("tensor(float16)", "FP16"),
        ("tensor(float)", "FP32"),
        ("tensor(double)", "FP64"),
        ("tensor(string)", "BYTES"),
        ("tensor(bfloat16)", "BF16"),
    ],
)
def test_oip_from_ort(ort_type: str, oip: str) -> None:
    assert OIP_FROM_ORT[ort_type] == oip


def test_every_integer_width_is_mapped() -> None:
    for sign, prefix in (("", "INT"), ("u", "UINT")):
        for bits in (8, 16, 32, 64):
            assert OIP_FROM_ORT[f"tensor({sign}int{bits})"] == f"{prefix}{bits}"


def test_numpy_dtypes_match_the_oip_names() -> None:
    assert NUMPY_FROM_OIP["FP32"] == np.float32
    assert NUMPY_FROM_OIP["FP16"] == np.float16
    assert NUMPY_FROM_OIP["BOOL"] == np.bool_
    assert NUMPY_FROM_OIP["UINT16"] == np.uint16
    assert NUMPY_FROM_OIP["BYTES"] == np.dtype(object)
    assert "BF16" not in NUMPY_FROM_OIP


def test_every_numpy_datatype_comes_from_an_ort_type() -> None:
    assert set(NUMPY_FROM_OIP) == set(OIP_FROM_ORT.values()) - {"BF16"}


@pytest.mark.parametrize(
    ("ort_type", "kind"),
    [
        ("tensor(float)", "tensor"),
        ("tensor(string)", "tensor"),
        ("seq(tensor(float))", "sequence"),
        ("seq(map(int64,tensor(float)))", "sequence"),
        ("map(string,tensor(float))", "map"),
        ("map(string,float)", "map"),
        ("optional(tensor(float))", "optional"),
        ("sparse_tensor(float)", "sparse_tensor"),
    ],
)
def test_kind_of(ort_type: str, kind: str) -> None:
    assert kind_of(ort_type) == kind


def test_kind_of_unknown_type() -> None:
    with pytest.raises(ValueError, match="unknown onnxruntime type"):
        kind_of("blob(float)")
