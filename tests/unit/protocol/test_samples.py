"""Warmup samples: parsed from .npz or an OIP JSON request, stored without pickle, checked."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from inference_farm.errors import InvalidInput, PayloadTooLarge
from inference_farm.protocol import samples

SIGNATURE = {
    "inputs": [
        {"name": "x", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "k", "datatype": "INT64", "shape": []},
    ]
}


def npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_npz_and_json_give_the_same_samples() -> None:
    x, k = np.arange(8, dtype=np.float32).reshape(2, 4), np.array(3, np.int64)
    from_npz = samples.parse(npz(x=x, k=k), 1000)
    request = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [2, 4], "data": x.ravel().tolist()},
            {"name": "k", "datatype": "INT64", "shape": [], "data": [3]},
        ]
    }
    from_json = samples.parse(json.dumps(request).encode(), 1000)
    for found in (from_npz, from_json):
        assert set(found) == {"x", "k"}
        np.testing.assert_array_equal(found["x"], x)
        assert found["k"].shape == () and int(found["k"]) == 3
        samples.check(found, SIGNATURE)


def test_the_stored_form_round_trips_every_datatype() -> None:
    stored = {
        "x": np.ones((1, 4), np.float16),
        "flag": np.array([True, False]),
        "text": np.array([b"caf\xc3\xa9", b"a"], dtype=object),
        "input/ids:0": np.arange(3, dtype=np.uint64),
    }
    back = samples.decode(samples.encode(stored))
    assert set(back) == set(stored)
    for name, array in stored.items():
        assert back[name].dtype == array.dtype
        np.testing.assert_array_equal(back[name], array)


@pytest.mark.parametrize(
    "content, says",
    [
        (b"", "empty"),
        (b"\x89PNG....", "neither .npz nor JSON"),
        (b"{not json", "not valid"),
        (
            b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1]}]}',
            "not valid",
        ),
        (b'{"inputs": []}', "non-empty list"),
        (npz(), "holds no inputs"),
        (b"PK\x03\x04garbage", "not readable"),
    ],
)
def test_malformed_warmup_files_are_400(content: bytes, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        samples.parse(content, 1000)


def test_zip_members_that_are_not_arrays_are_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.npy", b"not an array")
    with pytest.raises(InvalidInput, match=r"member 'x' is not a numpy array"):
        samples.parse(buffer.getvalue(), 1000)


def test_object_arrays_need_pickle_and_are_refused() -> None:
    content = npz(text=np.array(["a", None], dtype=object))
    with pytest.raises(InvalidInput, match=r"without pickle.*JSON request"):
        samples.parse(content, 1000)


def test_samples_are_bounded() -> None:
    with pytest.raises(PayloadTooLarge, match=r"max_tensor_elements"):
        samples.parse(npz(x=np.zeros((10, 10), np.float32)), 50)


@pytest.mark.parametrize(
    "arrays, says",
    [
        ({"x": np.zeros((1, 4), np.float64), "k": np.array(1)}, "input 'x': expected FP32"),
        ({"x": np.zeros((1, 5), np.float32), "k": np.array(1)}, r"shape \[-1, 4\]"),
        ({"x": np.zeros((1, 4), np.float32)}, "input 'k' is missing"),
        ({"x": np.zeros((1, 4), np.float32), "k": np.array(1), "z": np.zeros(1)}, "'z' is not"),
    ],
)
def test_samples_that_do_not_fit_name_the_input(arrays: dict, says: str) -> None:
    with pytest.raises(InvalidInput, match=says) as caught:
        samples.check(arrays, SIGNATURE)
    assert caught.value.message.startswith("warmup sample: ")
