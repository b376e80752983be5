"""Infer request parsing, tensor packing and response building, checked against tritonclient."""

from __future__ import annotations

import contextlib
import json
import struct
import subprocess
import sys
import tracemalloc
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton

from inference_farm.errors import FarmError, InvalidInput
from inference_farm.protocol import validation
from inference_farm.protocol.codec import (
    InferRequest,
    RequestedOutput,
    build_response,
    parse_request,
    validate,
)
from inference_farm.protocol.packing import datatype_of, for_onnxruntime, pack, pack_outputs, unpack
from tests import onnx_models

NUMERIC = {
    "BOOL": np.bool_,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
DATATYPES = [*NUMERIC, "BYTES"]


def sample(datatype: str, shape: tuple[int, ...] = (2, 3)) -> np.ndarray:
    """An array of datatype and shape holding extreme and ordinary values."""
    count = int(np.prod(shape))
    if datatype == "BYTES":
        pool = [b"", b"hello", "h\u00e9llo \u2603".encode(), b"\x00\xff\xfe", b"x" * 300]
        values = [pool[index % len(pool)] for index in range(count)]
        return np.fromiter(values, dtype=object, count=count).reshape(shape)
    dtype = np.dtype(NUMERIC[datatype])
    if datatype == "BOOL":
        return (np.arange(count) % 3 == 0).reshape(shape)
    if dtype.kind == "f":
        finfo = np.finfo(dtype)
        pool = [0.0, -1.5, float(finfo.max), float(finfo.tiny), 1 / 3, -0.0]
    else:
        iinfo = np.iinfo(dtype)
        pool = [0, 1, int(iinfo.min), int(iinfo.max), 7, -1 if iinfo.min else 2]
    values = [pool[index % len(pool)] for index in range(count)]
    return np.array(values, dtype=dtype).reshape(shape)


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    if want.dtype == object:
        assert got.dtype == object
        assert got.ravel().tolist() == want.ravel().tolist()
    else:
        assert got.dtype == want.dtype
        assert got.tobytes() == want.tobytes()


def body_of(document: Any) -> bytes:
    return json.dumps(document).encode()


def one_input(**entry: Any) -> bytes:
    return body_of({"inputs": [{"name": "x", **entry}]})


def bytes_blob(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


# --- pack and unpack ---


@pytest.mark.parametrize("datatype", DATATYPES)
@pytest.mark.parametrize("shape", [(2, 3), (), (0,), (3, 0, 2), (1, 1, 1, 5)])
def test_pack_round_trips_through_json(datatype: str, shape: tuple[int, ...]) -> None:
    array = sample(datatype, shape)
    packed = json.loads(json.dumps(pack(array, datatype)))
    assert packed["datatype"] == datatype
    assert packed["shape"] == list(shape)
    assert_same(unpack(packed), array)


@pytest.mark.parametrize("datatype", DATATYPES)
def test_pack_takes_non_contiguous_arrays(datatype: str) -> None:
    base = sample(datatype, (4, 6))
    for view in (base[:, ::2], base.T, base[::-1, 1:4]):
        assert not view.flags.c_contiguous
        assert_same(unpack(pack(view, datatype)), np.ascontiguousarray(view))


def test_pack_keeps_nan_payloads_and_negative_zero() -> None:
    bits = np.array([0x7E01, 0xFC00, 0x8000, 0x7BFF], dtype=np.uint16)
    array = bits.view(np.float16)
    assert unpack(pack(array, "FP16")).view(np.uint16).tolist() == bits.tolist()


def test_pack_uses_little_endian_whatever_the_input_order() -> None:
    big = np.array([1, 256, -2], dtype=">i4")
    packed = pack(big, "INT32")
    assert unpack(packed).tolist() == [1, 256, -2]
    assert unpack(packed).dtype == np.int32
    assert pack(big.astype("<i4"), "INT32") == packed


def test_pack_of_strings_gives_bytes() -> None:
    packed = pack(np.array(["a", "\u00e9"]), "BYTES")
    assert unpack(packed).tolist() == [b"a", "\u00e9".encode()]
    assert unpack(pack(np.array([b"ab", b"c"]), "BYTES")).tolist() == [b"ab", b"c"]


def test_pack_refuses_a_lossy_kind_change() -> None:
    with pytest.raises(InvalidInput, match="cannot pack float64 data as INT32"):
        pack(np.zeros(3), "INT32")
    with pytest.raises(InvalidInput, match="unknown datatype 'BF16'"):
        pack(np.zeros(3), "BF16")


@pytest.mark.parametrize(
    ("packed", "fragment"),
    [
        ({"datatype": "FP32", "shape": [2], "b64": "AAAA"}, "needs 8 bytes, got 3"),
        ({"datatype": "FP32", "shape": [2], "b64": "not base64!"}, "not valid base64"),
        ({"datatype": "FP32", "shape": [2]}, "must be base64 text"),
        ({"datatype": "FP8", "shape": [2], "b64": ""}, "unknown datatype 'FP8'"),
        ({"datatype": "INT8", "shape": [-1], "b64": ""}, "negative dimension"),
        ({"datatype": "INT8", "shape": "2", "b64": ""}, "shape must be a list"),
        ({"datatype": "BYTES", "shape": [3], "items": ["", ""]}, "list of 3 elements"),
        ({"datatype": "BYTES", "shape": [1], "json": []}, "list of 1 elements"),
        ({"datatype": "INT8", "shape": [10**12, 10**12], "b64": ""}, "beyond the limit"),
        ({"datatype": "BYTES", "shape": [0, 10**30], "items": []}, "beyond the limit"),
        ({"datatype": "INT8", "shape": [2, 0], "b64": "AA=="}, "needs 0 bytes, got 1"),
        ([1, 2], "must be a dict"),
    ],
)
def test_unpack_checks_what_it_is_given(packed: Any, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        unpack(packed)


@pytest.mark.parametrize(("datatype", "dtype"), NUMERIC.items())
def test_datatype_of_numeric_dtypes(datatype: str, dtype: type) -> None:
    assert datatype_of(np.zeros(2, dtype=dtype)) == datatype
    assert datatype_of(np.zeros(2, dtype=np.dtype(dtype).newbyteorder(">"))) == datatype


def test_datatype_of_strings_and_unknown_dtypes() -> None:
    for array in (np.array(["a"]), np.array([b"a"]), np.array([b"a"], dtype=object)):
        assert datatype_of(array) == "BYTES"
    with pytest.raises(FarmError, match="complex128"):
        datatype_of(np.zeros(2, dtype=complex))


# --- pack_outputs ---


def test_pack_outputs_makes_zipmap_output_json_safe() -> None:
    labels = np.array([0, 1], dtype=np.int64)
    probabilities = [
        {np.int64(0): np.float32(0.25), np.int64(1): np.float32(0.75)},
        {"cat": np.float64(0.5), 1: 0.5},
    ]
    signature = [
        {"name": "label", "datatype": "INT64", "shape": [-1], "kind": "tensor"},
        {"name": "probabilities", "datatype": "BYTES", "shape": None, "kind": "sequence"},
    ]
    packed = pack_outputs({"probabilities": probabilities, "label": labels}, signature)
    assert list(packed) == ["label", "probabilities"]
    assert_same(unpack(packed["label"]), labels)
    zipped = packed["probabilities"]
    assert zipped == {
        "datatype": "BYTES",
        "shape": [2],
        "json": [{"0": 0.25, "1": 0.75}, {"cat": 0.5, "1": 0.5}],
    }
    assert json.loads(json.dumps(packed)) == packed
    assert unpack(zipped).tolist() == zipped["json"]


class Opaque:
    def __str__(self) -> str:
        return "opaque thing"


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_pack_outputs_never_raises_on_non_tensors() -> None:
    looped: list = [1]
    looped.append(looped)
    outputs = {
        "map": {np.int64(3): np.array([1.5, 2.5]), "b": b"\xffraw", "o": Opaque()},
        "seq": [np.arange(3, dtype=np.int32), np.bool_(True), None],
        "none": None,
        "weird": Unprintable(),
        "loop": looped,
        "complex": np.array([1 + 2j]),
    }
    kinds = {"map": "map", "seq": "sequence", "none": "optional", "weird": "map"}
    signature = [{"name": name, "kind": kind} for name, kind in kinds.items()]
    packed = pack_outputs(outputs, signature)
    json.dumps(packed)
    assert packed["map"]["json"] == [{"3": [1.5, 2.5], "b": "\\xffraw", "o": "opaque thing"}]
    assert packed["seq"] == {"datatype": "BYTES", "shape": [3], "json": [[0, 1, 2], True, None]}
    assert packed["none"]["json"] == [None]
    assert packed["weird"]["json"] == ["<unprintable Unprintable>"]
    assert packed["loop"]["json"][0] == 1
    assert packed["loop"]["json"][1] == "[1, [...]]"
    assert packed["complex"]["json"] == [["(1+2j)"]]


def test_pack_outputs_packs_string_tensors_as_bytes() -> None:
    packed = pack_outputs({"s": np.array(["a", "bc"], dtype=object)}, [{"name": "s"}])
    assert packed["s"]["datatype"] == "BYTES"
    assert unpack(packed["s"]).tolist() == [b"a", b"bc"]


# --- parse_request: JSON data ---


def json_data(array: np.ndarray) -> list:
    if array.dtype == object:
        return np.vectorize(lambda item: item.decode(), otypes=[object])(array).tolist()
    return array.tolist()


@pytest.mark.parametrize("datatype", DATATYPES)
@pytest.mark.parametrize("nested", [False, True])
def test_parse_json_data(datatype: str, nested: bool) -> None:
    array = sample(datatype, (2, 3))
    if datatype == "BYTES":
        array = np.array([b"", b"a", "\u00e9".encode(), b"\n", b"zz", b"0"], dtype=object)
        array = array.reshape(2, 3)
    data = json_data(array) if nested else json_data(array.ravel())
    request = parse_request(one_input(datatype=datatype, shape=[2, 3], data=data), None)
    (tensor,) = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("x", datatype, [2, 3])
    assert_same(tensor.array, array)


def test_parse_json_scalars_empty_tensors_and_request_fields() -> None:
    document = {
        "id": "req-1",
        "parameters": {"binary_data_output": True, "custom": 3},
        "inputs": [
            {"name": "s", "datatype": "FP32", "shape": [], "data": [2]},
            {"name": "e", "datatype": "INT64", "shape": [0, 4], "data": []},
            {"name": "n", "datatype": "FP64", "shape": [3], "data": [float("nan"), 1e308, 1]},
        ],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}, {"name": "z"}],
    }
    request = parse_request(body_of(document), None)
    assert request.id == "req-1"
    assert request.binary_data_output
    assert request.parameters["custom"] == 3
    scalar, empty, nan = (tensor.array for tensor in request.inputs)
    assert scalar.shape == () and scalar.dtype == np.float32 and scalar == 2
    assert empty.shape == (0, 4) and empty.dtype == np.int64
    assert np.isnan(nan[0]) and nan[1] == 1e308
    assert request.outputs == [
        RequestedOutput("y", {"binary_data": True}),
        RequestedOutput("z", {}),
    ]
    assert [output.binary for output in request.outputs] == [True, False]


def test_parse_without_outputs_or_with_an_empty_list_asks_for_all() -> None:
    base = {"inputs": [{"name": "x", "datatype": "BOOL", "shape": [1], "data": [True]}]}
    for extra in ({}, {"outputs": []}):
        request = parse_request(body_of({**base, **extra}), None)
        assert isinstance(request, InferRequest)
        assert request.outputs is None and request.id is None
        assert not request.binary_data_output


# --- parse_request: binary data ---


def test_parse_a_hand_built_binary_body() -> None:
    floats = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    words = [b"ab", b"", "\u2603".encode()]
    small = np.array([-128, 127], dtype=np.int8)
    header = body_of(
        {
            "inputs": [
                {"name": "f", "datatype": "FP32", "shape": [2, 3]}
                | {"parameters": {"binary_data_size": 24}},
                {"name": "j", "datatype": "INT32", "shape": [2], "data": [[5], [6]]},
                {"name": "w", "datatype": "BYTES", "shape": [3, 1]}
                | {"parameters": {"binary_data_size": len(bytes_blob(words))}},
                {"name": "i", "datatype": "INT8", "shape": [2]}
                | {"parameters": {"binary_data_size": 2}},
            ]
        }
    )
    body = header + floats.astype("<f4").tobytes() + bytes_blob(words) + small.tobytes()
    request = parse_request(body, len(header))
    arrays = {tensor.name: tensor.array for tensor in request.inputs}
    assert_same(arrays["f"], floats)
    assert_same(arrays["j"], np.array([5, 6], dtype=np.int32))
    assert_same(arrays["w"], np.array(words, dtype=object).reshape(3, 1))
    assert_same(arrays["i"], small)
    arrays["f"][0, 0] = 1  # the arrays are writable copies, not views of the body


def test_binary_bool_takes_any_nonzero_byte_as_true() -> None:
    header = one_input(datatype="BOOL", shape=[3], parameters={"binary_data_size": 3})
    (tensor,) = parse_request(header + b"\x00\x01\x07", len(header)).inputs
    assert tensor.array.tolist() == [False, True, True]


def client_body(arrays: dict[str, tuple[np.ndarray, str]], binary: bool) -> tuple[bytes, Any]:
    inputs = []
    for name, (array, datatype) in arrays.items():
        item = triton.InferInput(name, list(array.shape), datatype)
        item.set_data_from_numpy(array, binary_data=binary)
        inputs.append(item)
    outputs = [triton.InferRequestedOutput("y", binary_data=binary)]
    return triton.InferenceServerClient.generate_request_body(inputs, outputs=outputs)


CLIENT_ARRAYS = {
    "f32": (sample("FP32", (2, 5)), "FP32"),
    "i64": (sample("INT64", (3,)), "INT64"),
    "flag": (sample("BOOL", (2, 2)), "BOOL"),
    "u16": (sample("UINT16", (4,)), "UINT16"),
    "text": (np.array([[b"one", b""], ["\u00e9".encode(), b"4"]], dtype=object), "BYTES"),
}


def test_parse_tritonclient_binary_bodies() -> None:
    arrays = {**CLIENT_ARRAYS, "half": (sample("FP16", (3, 2)), "FP16")}
    arrays["raw"] = (np.array([b"\xff\x00", b"\x80"], dtype=object), "BYTES")
    body, header_length = client_body(arrays, binary=True)
    assert header_length is not None
    request = parse_request(body, header_length)
    assert [tensor.name for tensor in request.inputs] == list(arrays)
    for tensor in request.inputs:
        assert_same(tensor.array, arrays[tensor.name][0])
    assert request.outputs == [RequestedOutput("y", {"binary_data": True})]


def test_parse_tritonclient_json_bodies() -> None:
    body, header_length = client_body(CLIENT_ARRAYS, binary=False)
    assert header_length is None
    request = parse_request(body, header_length)
    for tensor in request.inputs:
        assert_same(tensor.array, CLIENT_ARRAYS[tensor.name][0])


def test_parse_tritonclient_body_without_outputs() -> None:
    item = triton.InferInput("x", [2], "FP64")
    item.set_data_from_numpy(np.array([1.0, 2.0]))
    body, header_length = triton.InferenceServerClient.generate_request_body([item])
    request = parse_request(body, header_length)
    assert request.outputs is None
    assert request.binary_data_output


# --- parse_request: what is refused ---

GOOD = {"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}
BINARY = {"name": "x", "datatype": "FP32", "shape": [2, 3], "parameters": {"binary_data_size": 24}}


def replaced(**changes: Any) -> bytes:
    entry = {key: value for key, value in {**GOOD, **changes}.items() if value is not ...}
    return body_of({"inputs": [entry]})


BAD_JSON = [
    (b"{not json", "the request body is not valid JSON"),
    (b'{"inputs": "\xff\xfe"}', "not valid JSON: not UTF-8"),
    (b"[1, 2]", "the request body must be a JSON object"),
    (b"null", "must be a JSON object"),
    (b"[" * 100_000, "not valid JSON"),
    (body_of({}), "inputs must be a non-empty list"),
    (body_of({"inputs": []}), "inputs must be a non-empty list"),
    (body_of({"inputs": {"x": 1}}), "inputs must be a non-empty list"),
    (body_of({"inputs": [3]}), r"inputs\[0\] must be a JSON object"),
    (body_of({"inputs": [{"datatype": "FP32"}]}), r"inputs\[0\] needs a name"),
    (body_of({"inputs": [GOOD, GOOD]}), "input 'x' appears more than once"),
    (body_of({"id": 5, "inputs": [GOOD]}), "id must be a string"),
    (body_of({"parameters": [], "inputs": [GOOD]}), "the request: parameters must be"),
    (body_of({"parameters": {"binary_data_output": 1}, "inputs": [GOOD]}), "true or false"),
    (replaced(datatype="FP8"), "input 'x': unknown datatype 'FP8'; expected one of BOOL"),
    (replaced(datatype=...), "input 'x': unknown datatype None"),
    (replaced(datatype="BF16"), "unknown datatype 'BF16'"),
    (replaced(datatype=["FP32"]), r"unknown datatype \['FP32'\]"),
    (replaced(datatype={}), "unknown datatype {}"),
    (replaced(shape=[-1, 3]), r"input 'x': negative dimension in shape \[-1, 3\]"),
    (replaced(shape="2x3"), "input 'x': shape must be a list of integers, got a string"),
    (replaced(shape=[2.0, 3]), "shape must be a list of integers, got a number in it"),
    (replaced(shape=[True, 3]), "got a boolean in it"),
    (replaced(shape=...), "input 'x': shape must be a list of integers, got null"),
    (replaced(parameters=[1]), "input 'x': parameters must be a JSON object"),
    (replaced(data=...), "input 'x' has no data and no parameters.binary_data_size"),
    (replaced(data=[1, 2, 3, 4, 5]), r"input 'x': shape \[2, 3\] needs 6 elements, got 5"),
    (replaced(data=[[1, 2, 3], [4, 5, 6, 7]]), "needs 6 elements, got 7"),
    (replaced(data=5), "input 'x': data must be a list, got an integer"),
    (replaced(data=[1, 2, 3, 4, 5, "6"]), "input 'x': data must be numbers for FP32, got a string"),
    (replaced(data=[1, 2, 3, 4, 5, True]), "must be numbers for FP32, got a boolean"),
    (replaced(data=[1, 2, 3, 4, 5, None]), "must be numbers for FP32, got null"),
    (replaced(data=[[1, 2, 3], 4, 5, 6]), "data mixes lists and values"),
    (replaced(data=[1, 2, 3, 4, 5, [6]]), "must be numbers for FP32, got a list"),
    (replaced(data=[1, 2, 3, 4, 5, 1e39]), "value 1e\\+39 is out of range for FP32"),
    (replaced(data=[1, 2, 3, 4, 5, 10**400]), "data cannot be converted to FP32"),
    (replaced(datatype="FP16", data=[1, 2, 3, 4, 5, 70000]), "out of range for FP16"),
    (replaced(datatype="INT64", data=[1, 2, 3, 4, 5, 6.5]), "integers for INT64, got a number"),
    (replaced(datatype="INT8", data=[1, 2, 3, 4, 5, 300]), "value 300 is out of range for INT8"),
    (replaced(datatype="UINT8", data=[-1, 2, 3, 4, 5, 6]), "value -1 is out of range for UINT8"),
    (replaced(datatype="UINT64", data=[2**64, 2, 3, 4, 5, 6]), "out of range for UINT64"),
    (replaced(datatype="BOOL", data=[1, 0, 1, 0, 1, 0]), "true or false for BOOL, got an integer"),
    (replaced(datatype="BYTES", data=[1, 2, 3, 4, 5, 6]), "strings for BYTES, got an integer"),
    (replaced(datatype="BYTES", data=["a"] * 5 + ["\ud800"]), "not valid Unicode"),
    (replaced(parameters={"shared_memory_region": "r"}), "shared memory is not supported"),
    (replaced(parameters={"binary_data_size": 24}), "has both data and"),
    (body_of({"inputs": [BINARY]}), "has binary_data_size but the request has no Inference"),
    (body_of({"inputs": [GOOD], "outputs": {}}), "outputs must be a list"),
    (body_of({"inputs": [GOOD], "outputs": ["y"]}), r"outputs\[0\] must be a JSON object"),
    (body_of({"inputs": [GOOD], "outputs": [{"name": ""}]}), r"outputs\[0\] needs a name"),
    (body_of({"inputs": [GOOD], "outputs": [{"name": "y"}] * 2}), "requested more than once"),
    (
        body_of({"inputs": [GOOD], "outputs": [{"name": "y", "parameters": {"binary_data": 1}}]}),
        "output 'y': parameters.binary_data must be true or false",
    ),
    (
        body_of(
            {"inputs": [GOOD], "outputs": [{"name": "y", "parameters": {"classification": 2}}]}
        ),
        "classification extension is not supported",
    ),
]


@pytest.mark.parametrize(("body", "fragment"), BAD_JSON)
def test_bad_json_requests_are_refused(body: bytes, fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment) as caught:
        parse_request(body, None)
    assert caught.value.status == 400
    assert "\n" not in str(caught.value)


def binary_body(entries: list[dict], data: bytes) -> tuple[bytes, int]:
    header = body_of({"inputs": entries})
    return header + data, len(header)


def with_size(size: Any, **changes: Any) -> dict:
    return {**BINARY, **changes, "parameters": {"binary_data_size": size}}


BAD_BINARY = [
    (binary_body([with_size(40)], bytes(40)), r"binary_data_size 40 does not match shape \[2, 3\]"),
    (binary_body([with_size(24)], bytes(10)), "binary data is missing; binary_data_size is 24"),
    (binary_body([with_size(24)], bytes(30)), "6 bytes of binary data are left over"),
    (binary_body([GOOD], b"xyz"), "3 bytes of binary data are left over"),
    (binary_body([with_size(-1)], b""), "binary_data_size must be a non-negative integer"),
    (binary_body([with_size("24")], bytes(24)), "must be a non-negative integer"),
    (binary_body([with_size(True)], bytes(1)), "must be a non-negative integer"),
    (
        binary_body([with_size(7, datatype="BYTES", shape=[2])], bytes_blob([b"abc"])),
        r"shape \[2\] needs 2 elements, got 1 in the binary data",
    ),
    (
        binary_body([with_size(6, datatype="BYTES", shape=[1])], struct.pack("<I", 9) + b"ab"),
        "BYTES element 0 of 9 bytes runs past the end",
    ),
    (
        binary_body([with_size(10, datatype="BYTES", shape=[1])], bytes_blob([b"a", b"b"])),
        "holds more than the 1 BYTES elements",
    ),
    (
        binary_body([with_size(2, datatype="BYTES", shape=[1])], b"\x01\x00"),
        r"shape \[1\] needs 1 elements, got 0",
    ),
]


@pytest.mark.parametrize(("body", "fragment"), BAD_BINARY)
def test_bad_binary_requests_are_refused(body: tuple[bytes, int], fragment: str) -> None:
    with pytest.raises(InvalidInput, match=fragment):
        parse_request(*body)


def test_header_length_beyond_the_body() -> None:
    body = one_input(datatype="FP32", shape=[1], data=[1])
    with pytest.raises(InvalidInput, match=f"Length 999 is larger than the body \\({len(body)} "):
        parse_request(body, 999)
    with pytest.raises(InvalidInput, match="must not be negative"):
        parse_request(body, -1)


@pytest.mark.parametrize(
    "shape", [[10**12, 10**12], [2**62, 2**62, 2**62], [2**24 + 1], [0, 10**30], [10**4000]]
)
@pytest.mark.parametrize("binary", [False, True])
def test_absurd_shapes_fail_fast_without_allocating(shape: list[int], binary: bool) -> None:
    entry = {"name": "x", "datatype": "FP64", "shape": shape, "data": [1.0]}
    if binary:
        entry = {**entry, "parameters": {"binary_data_size": 8}}
        del entry["data"]
    header = json.dumps({"inputs": [entry]}).encode()
    tracemalloc.start()  # numpy reports its buffers to tracemalloc too
    try:
        with pytest.raises(InvalidInput, match=r"limit of 16777216 elements|not valid JSON"):
            parse_request(header + bytes(8 if binary else 0), len(header) if binary else None)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20, f"{peak} bytes allocated while refusing {shape}"


def test_the_element_limit_counts_every_input_and_can_be_set() -> None:
    entries = [
        {"name": name, "datatype": "UINT8", "shape": [3], "data": [1, 2, 3]} for name in "ab"
    ]
    body = body_of({"inputs": entries})
    assert len(parse_request(body, None, max_elements=6).inputs) == 2
    with pytest.raises(InvalidInput, match="holds 6 elements, more than the limit of 5"):
        parse_request(body, None, max_elements=5)
    with pytest.raises(InvalidInput, match=r"input 'a': shape \[3\] is beyond the limit of 2"):
        parse_request(body, None, max_elements=2)


def test_too_many_dimensions_are_refused() -> None:
    body = one_input(datatype="INT8", shape=[1] * 33, data=[1])
    with pytest.raises(InvalidInput, match="shape has 33 dimensions, more than 32"):
        parse_request(body, None)
    request = parse_request(one_input(datatype="INT8", shape=[1] * 32, data=[[1]]), None)
    assert request.inputs[0].array.shape == (1,) * 32


def test_deeply_nested_data_is_flattened_or_refused() -> None:
    def body(depth: int) -> bytes:
        head = b'{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":'
        return head + b"[" * depth + b"1" + b"]" * depth + b"}]}"

    assert parse_request(body(500), None).inputs[0].array.tolist() == [1.0]
    with pytest.raises(InvalidInput, match="not valid JSON"):
        parse_request(body(100_000), None)


ODD_VALUES = [None, True, -1, 0, 2**70, 1.5, "x", "", [], {}, [1], {"a": 1}, [[1]], "\ud800"]


def paths_of(value: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        found += [deeper for key, item in value.items() for deeper in paths_of(item, (*path, key))]
    if isinstance(value, list):
        found += [
            deeper for key, item in enumerate(value) for deeper in paths_of(item, (*path, key))
        ]
    return found


def test_any_odd_value_anywhere_parses_or_gives_invalid_input() -> None:
    document = {
        "id": "r",
        "parameters": {"binary_data_output": False},
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [2], "data": [1, 2]},
            {"name": "b", "datatype": "BYTES", "shape": [1, 1], "data": [["s"]]},
            {"name": "c", "datatype": "INT8", "shape": [1]}
            | {"parameters": {"binary_data_size": 1}},
        ],
        "outputs": [{"name": "y", "parameters": {"binary_data": True}}],
    }
    for path in paths_of(document)[1:]:
        for value in ODD_VALUES:
            changed = json.loads(json.dumps(document))
            parent = changed
            for key in path[:-1]:
                parent = parent[key]
            parent[path[-1]] = value
            header = json.dumps(changed).encode("utf-8", "surrogatepass")
            with contextlib.suppress(InvalidInput):
                parse_request(header + b"\x01", len(header))


def test_flipped_bytes_in_a_client_body_parse_or_give_invalid_input() -> None:
    body, header_length = client_body(CLIENT_ARRAYS, binary=True)
    for position in range(0, len(body), 3):
        for value in (0, 0x22, 0x5B, 0xFF):
            flipped = body[:position] + bytes([value]) + body[position + 1 :]
            with contextlib.suppress(InvalidInput):
                parse_request(flipped, header_length)


# --- build_response ---


def packed_outputs() -> dict[str, dict]:
    outputs = {name: pack(sample(name), name) for name in DATATYPES}
    outputs["EMPTY"] = pack(np.zeros((0, 3), dtype=np.float32), "FP32")
    outputs["SCALAR"] = pack(np.array(2.5, dtype=np.float64), "FP64")
    return json.loads(json.dumps(outputs))


def parse_response(body: bytes, header_length: int | None) -> Any:
    return triton.InferResult.from_response_body(body, header_length=header_length)


def expected(name: str) -> np.ndarray:
    return unpack(packed_outputs()[name])


@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient_reads_every_datatype(binary: bool) -> None:
    outputs = packed_outputs()
    outputs["BYTES"] = pack(np.array([[b"ab", b""], [b"\xc3\xa9", b"z"]], dtype=object), "BYTES")
    body, header_length = build_response("m", "3", "req", outputs, None, binary_default=binary)
    assert (header_length is not None) is binary
    result = parse_response(body, header_length)
    document = result.get_response()
    assert (document["model_name"], document["model_version"], document["id"]) == ("m", "3", "req")
    assert [output["name"] for output in document["outputs"]] == list(outputs)
    for name, packed in outputs.items():
        got, want = result.as_numpy(name), unpack(packed)
        if want.dtype == object:
            as_bytes = [item if binary else item.encode() for item in got.ravel().tolist()]
            assert got.shape == want.shape and as_bytes == want.ravel().tolist()
        else:
            assert_same(got.astype(want.dtype), want)


def test_json_response_is_compact_with_plain_values() -> None:
    outputs = {"b": pack(np.array([True, False]), "BOOL"), "i": pack(np.array([3]), "INT64")}
    body, header_length = build_response("m", "1", None, outputs, None)
    assert header_length is None
    assert body == (
        b'{"model_name":"m","model_version":"1","outputs":['
        b'{"name":"b","datatype":"BOOL","shape":[2],"data":[true,false]},'
        b'{"name":"i","datatype":"INT64","shape":[1],"data":[3]}]}'
    )


def test_requested_outputs_choose_order_and_binary_each() -> None:
    outputs = packed_outputs()
    requested = [
        RequestedOutput("FP32", {"binary_data": True}),
        RequestedOutput("INT8", {}),
        RequestedOutput("BYTES", {"binary_data": False}),
    ]
    body, header_length = build_response("m", "1", None, outputs, requested, binary_default=True)
    result = parse_response(body, header_length)
    entries = result.get_response()["outputs"]
    assert [entry["name"] for entry in entries] == ["FP32", "INT8", "BYTES"]
    assert entries[0]["parameters"] == {"binary_data_size": 24} and "data" not in entries[0]
    assert entries[1]["parameters"] == {"binary_data_size": 6}
    assert "data" in entries[2]
    assert_same(result.as_numpy("FP32"), expected("FP32"))
    assert_same(result.as_numpy("INT8"), expected("INT8"))
    assert len(body) == header_length + 24 + 6


def test_json_floats_keep_nan_and_infinity() -> None:
    array = np.array([np.nan, np.inf, -np.inf, 0.1], dtype=np.float32)
    body, header_length = build_response("m", "1", None, {"f": pack(array, "FP32")}, None)
    got = parse_response(body, header_length).as_numpy("f").astype(np.float32)
    assert_same(got, array)


def test_only_json_when_nothing_is_binary() -> None:
    requested = [RequestedOutput("INT16", {"binary_data": False})]
    body, header_length = build_response("m", "1", None, packed_outputs(), requested, True)
    assert header_length is None
    assert json.loads(body)["outputs"][0]["data"] == expected("INT16").ravel().tolist()


def test_empty_binary_output_still_sets_the_header_length() -> None:
    requested = [RequestedOutput("EMPTY", {"binary_data": True})]
    body, header_length = build_response("m", "1", None, packed_outputs(), requested)
    assert header_length == len(body)
    assert parse_response(body, header_length).as_numpy("EMPTY").shape == (0, 3)


def test_bytes_that_are_not_utf8_go_as_base64_in_json() -> None:
    outputs = {"raw": pack(np.array([b"\xff", b"ok"], dtype=object), "BYTES")}
    body, header_length = build_response("m", "1", None, outputs, None)
    (entry,) = json.loads(body)["outputs"]
    assert entry["parameters"] == {"content_encoding": "base64"}
    assert entry["data"] == ["/w==", "b2s="]
    body, header_length = build_response("m", "1", None, outputs, None, binary_default=True)
    got = parse_response(body, header_length).as_numpy("raw")
    assert got.tolist() == [b"\xff", b"ok"]


def test_non_tensor_outputs_answer_one_json_text_per_element() -> None:
    zipmap = [{np.int64(0): np.float32(0.25), np.int64(1): np.float32(0.75)}]
    packed = pack_outputs(
        {"probabilities": zipmap}, [{"name": "probabilities", "kind": "sequence"}]
    )
    packed = json.loads(json.dumps(packed))
    body, header_length = build_response("m", "1", None, packed, None)
    (entry,) = parse_response(body, header_length).get_response()["outputs"]
    assert entry["datatype"] == "BYTES" and entry["shape"] == [1]
    assert entry["parameters"] == {"content_type": "application/json"}
    assert [json.loads(text) for text in entry["data"]] == [{"0": 0.25, "1": 0.75}]
    body, header_length = build_response("m", "1", None, packed, None, binary_default=True)
    result = parse_response(body, header_length)
    assert result.get_output("probabilities")["parameters"]["content_type"] == "application/json"
    assert json.loads(result.as_numpy("probabilities")[0]) == {"0": 0.25, "1": 0.75}


def test_unknown_requested_output_is_refused() -> None:
    with pytest.raises(InvalidInput, match="output 'nope' is not among the outputs; expected"):
        build_response("m", "1", None, packed_outputs(), [RequestedOutput("nope")])


def test_round_trip_from_client_to_client() -> None:
    arrays = {"f32": CLIENT_ARRAYS["f32"], "text": CLIENT_ARRAYS["text"]}
    body, header_length = client_body(arrays, binary=True)
    request = parse_request(body, header_length)
    outputs = {tensor.name: pack(tensor.array, tensor.datatype) for tensor in request.inputs}
    requested = [RequestedOutput(name, {"binary_data": True}) for name in outputs]
    answer, answer_length = build_response("echo", "1", request.id, outputs, requested)
    result = parse_response(answer, answer_length)
    for name, (array, _) in arrays.items():
        assert_same(result.as_numpy(name), array)


# --- with onnxruntime ---


def session_of(model: Any) -> Any:
    import onnxruntime

    return onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )


def test_string_inputs_reach_onnxruntime_as_text() -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "strings",
        [helper.make_tensor_value_info("x", TensorProto.STRING, ["N"])],
        [helper.make_tensor_value_info("y", TensorProto.STRING, ["N"])],
    )
    session = session_of(onnx_models.model_of(graph))
    body = one_input(datatype="BYTES", shape=[2], data=["ab", "\u00e9"])
    packed = pack(parse_request(body, None).inputs[0].array, "BYTES")
    feed = for_onnxruntime(unpack(json.loads(json.dumps(packed))), "x")
    (result,) = session.run(None, {"x": feed})
    assert result.tolist() == ["ab", "\u00e9"]
    packed = pack_outputs({"y": result}, [{"name": "y", "kind": "tensor"}])
    answer, _ = build_response("m", "1", None, packed, None)
    assert json.loads(answer)["outputs"][0]["data"] == ["ab", "\u00e9"]
    numbers = np.arange(3)
    assert for_onnxruntime(numbers, "n") is numbers
    with pytest.raises(InvalidInput, match="input 'x': string tensors take UTF-8 text only"):
        for_onnxruntime(np.array([b"\xff"], dtype=object), "x")


def test_a_real_zipmap_output_travels_to_the_client() -> None:
    session = session_of(onnx_models.sequence_output())
    signature = [
        {"name": "label", "datatype": "INT64", "shape": [-1], "kind": "tensor"},
        {"name": "probs", "datatype": "BYTES", "shape": None, "kind": "sequence"},
    ]
    x = np.array([[0.2, 0.8], [0.9, 0.1]], dtype=np.float32)
    results = dict(zip(["label", "probs"], session.run(None, {"x": x}), strict=True))
    packed = json.loads(json.dumps(pack_outputs(results, signature)))
    body, header_length = build_response("zip", "1", "7", packed, None, binary_default=True)
    result = parse_response(body, header_length)
    assert result.as_numpy("label").tolist() == [1, 0]
    probs = [json.loads(text) for text in result.as_numpy("probs")]
    assert probs == [dict(zip("01", row.tolist(), strict=True)) for row in x]


def test_codec_offers_validate() -> None:
    assert validate is validation.validate


# --- imports ---


def test_codec_imports_stay_light() -> None:
    code = (
        "import json, sys\n"
        "import inference_farm.protocol.codec, inference_farm.protocol.packing\n"
        "heavy = ['onnxruntime', 'onnx', 'flask', 'celery', 'sqlalchemy']\n"
        "print(json.dumps([name for name in heavy if name in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == []
