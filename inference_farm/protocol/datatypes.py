"""onnxruntime type strings, Open Inference Protocol datatypes and numpy dtypes."""

from __future__ import annotations

import numpy as np

OIP_FROM_ORT: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
    "tensor(bfloat16)": "BF16",
}

# BF16 is absent: numpy has no bfloat16, so the farm can neither decode nor feed it.
NUMPY_FROM_OIP: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}

KINDS = {
    "tensor": "tensor",
    "seq": "sequence",
    "map": "map",
    "optional": "optional",
    "sparse_tensor": "sparse_tensor",
}


def kind_of(ort_type: str) -> str:
    """The kind of an onnxruntime type string: tensor, sequence, map, optional or sparse_tensor."""
    prefix = ort_type.partition("(")[0].strip()
    try:
        return KINDS[prefix]
    except KeyError:
        raise ValueError(f"unknown onnxruntime type {ort_type!r}") from None
