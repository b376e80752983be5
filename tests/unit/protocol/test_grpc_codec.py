"""The gRPC codec, read and written by tritonclient.grpc's own request and result classes."""

from __future__ import annotations

import re

import numpy as np
import pytest

from inference_farm.errors import InvalidInput
from inference_farm.protocol.grpc import inference_pb2
from inference_farm.protocol.grpc.codec import CONTENTS_FIELD, build_infer, parse_infer
from inference_farm.protocol.packing import pack
from inference_farm.protocol.request import InferRequest, RequestedOutput

triton = pytest.importorskip("tritonclient.grpc")
from tritonclient.grpc import _utils, service_pb2  # noqa: E402

LIMIT = 1000


def _extremes(dtype: type) -> np.ndarray:
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else np.finfo(dtype)
    return np.array([[info.min, 0, info.max], [1, 2, 3]], dtype=dtype)


NUMBERS = {
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
}  # fmt: skip
SAMPLES = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    **{name: _extremes(dtype) for name, dtype in NUMBERS.items()},
    "BYTES": np.array([[b"a", b"", b"\xff\x00"], [b"text", b"\x00", b"x" * 300]], dtype=object),
}


def _client_request(inputs: list, outputs: list | None = None, **options) -> InferRequest:
    """What tritonclient sends for inputs, parsed back by our codec from its wire bytes."""
    arguments = {
        "model_name": "m", "inputs": inputs, "model_version": "", "request_id": "",
        "outputs": outputs, "sequence_id": 0, "sequence_start": False, "sequence_end": False,
        "priority": 0, "timeout": None, "parameters": None,
    }  # fmt: skip
    arguments.update(options)
    wire = _utils._get_inference_request(**arguments).SerializeToString()
    return parse_infer(inference_pb2.ModelInferRequest.FromString(wire), LIMIT)


def _client_result(response: inference_pb2.ModelInferResponse) -> triton.InferResult:
    """Our response as tritonclient reads it off the wire."""
    return triton.InferResult(
        service_pb2.ModelInferResponse.FromString(response.SerializeToString())
    )


def _typed_input(name: str, datatype: str, array: np.ndarray) -> triton.InferInput:
    """A tritonclient input whose data is in the typed contents field, not raw."""
    infer_input = triton.InferInput(name, list(array.shape), datatype)
    contents = infer_input._get_tensor().contents
    getattr(contents, CONTENTS_FIELD[datatype]).extend(array.ravel().tolist())
    return infer_input


def _assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    if want.dtype == object:
        assert got.ravel().tolist() == want.ravel().tolist()
    else:
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("datatype", list(SAMPLES))
def test_raw_round_trip_through_tritonclient(datatype: str) -> None:
    array = SAMPLES[datatype]
    infer_input = triton.InferInput("x", list(array.shape), datatype)
    infer_input.set_data_from_numpy(array)
    request = _client_request([infer_input], request_id="r-1")
    [tensor] = request.inputs
    assert (tensor.name, tensor.datatype, tensor.shape) == ("x", datatype, [2, 3])
    _assert_same(tensor.array, array)

    response = build_infer("m", "1.0.0", request, {"y": pack(tensor.array, datatype)})
    assert (response.model_name, response.model_version, response.id) == ("m", "1.0.0", "r-1")
    result = _client_result(response)
    assert result.get_output("y").datatype == datatype
    _assert_same(result.as_numpy("y"), array)


@pytest.mark.parametrize("datatype", [name for name in SAMPLES if name != "FP16"])
def test_typed_contents_round_trip(datatype: str) -> None:
    array = SAMPLES[datatype]
    request = _client_request([_typed_input("x", datatype, array)])
    assert request.id is None
    _assert_same(request.inputs[0].array, array)
    response = build_infer("m", "1", request, {"y": pack(request.inputs[0].array, datatype)})
    _assert_same(_client_result(response).as_numpy("y"), array)


def test_parameters_id_and_requested_outputs_are_kept() -> None:
    first = triton.InferInput("a", [2], "INT32")
    first.set_data_from_numpy(np.array([1, 2], dtype=np.int32))
    first._get_tensor().parameters["scale"].double_param = 0.5
    second = triton.InferInput("b", [1], "BYTES")
    second.set_data_from_numpy(np.array([b"hi"], dtype=object))
    wanted = [triton.InferRequestedOutput("q"), triton.InferRequestedOutput("p")]
    request = _client_request(
        [first, second], wanted, request_id="id-7", priority=3, timeout=50,
        sequence_id=9, sequence_start=True, parameters={"tag": "t", "n": -4, "on": False},
    )  # fmt: skip
    assert request.id == "id-7"
    assert request.parameters == {
        "tag": "t", "n": -4, "on": False, "priority": 3, "timeout": 50,
        "sequence_id": 9, "sequence_start": True, "sequence_end": False,
    }  # fmt: skip
    assert [tensor.name for tensor in request.inputs] == ["a", "b"]
    assert request.inputs[0].parameters == {"scale": 0.5}
    assert request.inputs[1].array.tolist() == [b"hi"]
    assert request.outputs == [RequestedOutput("q"), RequestedOutput("p")]

    outputs = {
        "p": pack(np.array([1.5], dtype=np.float32), "FP32"),
        "q": {"datatype": "BYTES", "shape": [2], "json": [{"k": 1}, "s"]},
        "r": pack(np.array([7], dtype=np.int64), "INT64"),
    }
    response = build_infer("m", "2", request, outputs)
    assert [output.name for output in response.outputs] == ["q", "p"]  # the request's order
    assert len(response.raw_output_contents) == 2
    result = _client_result(response)
    assert result.as_numpy("q").tolist() == [b'{"k":1}', b'"s"']
    assert response.outputs[0].parameters["content_type"].string_param == "application/json"
    assert result.as_numpy("p").tolist() == [1.5]
    assert result.as_numpy("r") is None


def test_every_output_is_sent_when_none_is_requested_and_unknown_ones_are_refused() -> None:
    outputs = {"a": pack(np.zeros(0, np.int8), "INT8"), "b": pack(np.ones(1, np.uint16), "UINT16")}
    response = build_infer("m", "1", InferRequest(None, {}, [], None), outputs)
    assert [(o.name, o.datatype, list(o.shape)) for o in response.outputs] == [
        ("a", "INT8", [0]),
        ("b", "UINT16", [1]),
    ]
    assert list(response.raw_output_contents) == [b"", b"\x01\x00"]
    with pytest.raises(InvalidInput, match=re.escape("output 'c' is not among the outputs")):
        build_infer("m", "1", InferRequest(None, {}, [], [RequestedOutput("c")]), outputs)


def _proto(*inputs: dict, raw: list[bytes] = (), **request) -> inference_pb2.ModelInferRequest:
    message = inference_pb2.ModelInferRequest(model_name="m", raw_input_contents=raw, **request)
    for item in inputs:
        contents = item.pop("contents", None)
        tensor = message.inputs.add(**item)
        if contents:
            tensor.contents.CopyFrom(inference_pb2.InferTensorContents(**contents))
    return message


FOUR = {"name": "x", "datatype": "INT32", "shape": [2, 2]}
BAD = {
    "raw beside contents": (
        _proto(FOUR, dict(FOUR, name="y", contents={"int_contents": [1, 2, 3, 4]}),
               raw=[bytes(16), bytes(16)]),
        "input 'y' has contents but the request also has raw_input_contents",
    ),
    "too few raw entries": (
        _proto(FOUR, dict(FOUR, name="y"), raw=[bytes(16)]),
        "input 'y' has no raw_input_contents entry: got 1 for 2 inputs",
    ),
    "too many raw entries": (
        _proto(FOUR, raw=[bytes(16), bytes(16)]),
        "raw_input_contents has 2 entries for 1 inputs ('x')",
    ),
    "raw byte length": (
        _proto(FOUR, raw=[bytes(15)]),
        "input 'x': raw_input_contents[0] has 15 bytes but shape [2, 2] of INT32 needs 16",
    ),
    "raw BYTES framing": (
        _proto({"name": "s", "datatype": "BYTES", "shape": [2]}, raw=[b"\x01\x00\x00\x00a"]),
        "input 's': shape [2] needs 2 elements, got 1 in the binary data",
    ),
    "typed count": (
        _proto(dict(FOUR, contents={"int_contents": [1, 2, 3]})),
        "input 'x': contents.int_contents: shape [2, 2] needs 4 elements, got 3",
    ),
    "typed BYTES count": (
        _proto({"name": "s", "datatype": "BYTES", "shape": [2],
                "contents": {"bytes_contents": [b"a"]}}),
        "input 's': shape [2] needs 2 elements, got 1",
    ),
    "no data at all": (
        _proto(FOUR),
        "input 'x' has no data; send it in contents.int_contents, or every input's data in",
    ),
    "wrong field": (
        _proto(dict(FOUR, contents={"int64_contents": [1, 2, 3, 4]})),
        "input 'x': contents.int64_contents does not belong to INT32; "
        "INT32 data goes in contents.int_contents",
    ),
    "FP16 typed": (
        _proto({"name": "h", "datatype": "FP16", "shape": [1], "contents": {"fp32_contents": [1]}}),
        "input 'h': contents.fp32_contents does not belong to FP16; FP16 has no typed field; "
        "send FP16 data in raw_input_contents",
    ),
    "FP16 without data": (
        _proto({"name": "h", "datatype": "FP16", "shape": [1]}),
        "input 'h': FP16 data can only be sent in raw_input_contents",
    ),
    "typed out of range": (
        _proto({"name": "b", "datatype": "INT8", "shape": [1],
                "contents": {"int_contents": [300]}}),
        "input 'b': contents.int_contents: value 300 is out of range for INT8",
    ),
    "unknown datatype": (
        _proto({"name": "x", "datatype": "FP8", "shape": [1]}),
        "input 'x': unknown datatype 'FP8'; expected one of BOOL, INT8",
    ),
    "negative dims": (
        _proto({"name": "x", "datatype": "FP32", "shape": [2, -1]}, raw=[b""]),
        "input 'x': negative dimension in shape [2, -1]",
    ),
    "over the limit in one input": (
        _proto({"name": "x", "datatype": "UINT8", "shape": [LIMIT + 1]}, raw=[b""]),
        f"input 'x': shape [{LIMIT + 1}] is beyond the limit of {LIMIT} elements",
    ),
    "over the limit in all": (
        _proto({"name": "x", "datatype": "UINT8", "shape": [LIMIT]},
               {"name": "y", "datatype": "UINT8", "shape": [1]}, raw=[b"", b""]),
        f"the request holds {LIMIT + 1} elements, more than the limit of {LIMIT}",
    ),
    "shared memory": (
        _proto({"name": "x", "datatype": "UINT8", "shape": [1], "parameters": {
            "shared_memory_region": inference_pb2.InferParameter(string_param="r")}},
            raw=[b"\x00"]),
        "input 'x': shared memory is not supported; send the data",
    ),
    "classification": (
        _proto(dict(FOUR), raw=[bytes(16)], outputs=[{"name": "y", "parameters": {
            "classification": inference_pb2.InferParameter(int64_param=3)}}]),
        "output 'y': the classification extension is not supported",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_requests_are_invalid_input_naming_what_is_wrong(case: str) -> None:
    message, expected = BAD[case]
    with pytest.raises(InvalidInput, match=re.escape(expected)):
        parse_infer(message, LIMIT)
