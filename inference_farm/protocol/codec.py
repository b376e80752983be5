"""Open Inference Protocol bodies in and out; runtime.packing carries tensors in between.

Requests may use Triton's binary tensor extension: Inference-Header-Content-Length bytes of
JSON, then the data of each input with parameters.binary_data_size, in input order; numeric
data is little-endian and row-major, BYTES elements each a 4-byte little-endian length and
the bytes. Non-tensor outputs are sent as one JSON text per element of a BYTES output with
parameters.content_type "application/json". BYTES outputs that are not all UTF-8 go in
JSON form as base64 with parameters.content_encoding "base64".
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
import orjson

from inference_farm.errors import InvalidInput
from inference_farm.protocol.datatypes import NUMPY_FROM_OIP
from inference_farm.protocol.packing import array_from_raw, b64, object_array, unpack
from inference_farm.protocol.request import InferRequest, InputTensor, RequestedOutput
from inference_farm.protocol.validation import (
    LENGTH_HEADER,
    InputHead,
    binary_chunk,
    check_flag,
    data_to_array,
    input_heads,
    load_document,
    parameters_of,
    requested_outputs,
    split_bytes,
)
from inference_farm.protocol.validation import validate as validate

MAX_ELEMENTS = 2**24
_LENGTH = struct.Struct("<I")
_SEPARATORS = (",", ":")


# --- parsing requests ---


def parse_request(
    body: bytes, header_length: int | None, *, max_elements: int = MAX_ELEMENTS
) -> InferRequest:
    """The infer request in body; header_length is the Inference-Header-Content-Length value."""
    header, binary = _split_body(body, header_length)
    has_header = header_length is not None
    try:
        document = load_document(header, strict=False)
        return parse_document(document, binary, has_header, max_elements=max_elements)
    except InvalidInput:  # refused after the fast parse: the strict one words the reason
        document = load_document(header)
        return parse_document(document, binary, has_header, max_elements=max_elements)


def parse_document(
    document: dict, binary: bytes = b"", has_header: bool = False, *,
    max_elements: int = MAX_ELEMENTS,
) -> InferRequest:  # fmt: skip
    """The infer request in an already decoded JSON document (plus any binary tensor data)."""
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput("id must be a string")
    parameters = parameters_of(document, "the request")
    check_flag(parameters, "binary_data_output", "the request")
    heads = input_heads(document.get("inputs"), max_elements)
    inputs = _decode_inputs(heads, binary, has_header)
    requested = requested_outputs(document.get("outputs"))
    outputs = None if requested is None else [RequestedOutput(*pair) for pair in requested]
    return InferRequest(request_id, parameters, inputs, outputs)


def _split_body(body: bytes, header_length: int | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    if header_length < 0:
        raise InvalidInput(f"{LENGTH_HEADER} must not be negative, got {header_length}")
    if header_length > len(body):
        raise InvalidInput(
            f"{LENGTH_HEADER} {header_length} is larger than the body ({len(body)} bytes)"
        )
    return body[:header_length], body[header_length:]


def _decode_inputs(heads: list[InputHead], binary: bytes, has_header: bool) -> list[InputTensor]:
    offset = 0
    inputs = []
    for head in heads:
        what = f"input {head.name!r}"
        if "shared_memory_region" in head.parameters:
            raise InvalidInput(f"{what}: shared memory is not supported; send the data")
        size = head.parameters.get("binary_data_size")
        if size is None:
            if "data" not in head.item:
                raise InvalidInput(f"{what} has no data and no parameters.binary_data_size")
            array = data_to_array(what, head.item["data"], head.datatype, head.shape)
        else:
            if "data" in head.item:
                raise InvalidInput(f"{what} has both data and parameters.binary_data_size")
            if not has_header:
                raise InvalidInput(
                    f"{what} has binary_data_size but the request has no {LENGTH_HEADER}"
                )
            chunk = binary_chunk(head, binary, offset)
            offset += len(chunk)
            if head.datatype == "BYTES":
                array = object_array(split_bytes(what, chunk, head.shape), head.shape)
            else:
                array = array_from_raw(chunk, NUMPY_FROM_OIP[head.datatype], head.shape)
        inputs.append(InputTensor(head.name, head.datatype, head.shape, head.parameters, array))
    if offset < len(binary):
        raise InvalidInput(
            f"{len(binary) - offset} bytes of binary data are left over after the inputs"
        )
    return inputs


# --- building responses ---


def build_response(
    model_name: str,
    model_version: str,
    request_id: str | None,
    outputs: dict[str, dict],
    requested: list[RequestedOutput] | None,
    binary_default: bool = False,
) -> tuple[bytes, int | None]:
    """An infer response body and, when it carries binary data, its JSON header's length."""
    entries, chunks, any_binary, finite = [], [], False, True
    for name, binary in selection(outputs, requested, binary_default):
        entry, chunk, finite_here = output_entry(name, outputs[name], binary)
        entries.append(entry)
        finite = finite and finite_here
        if binary:
            chunks.append(chunk)
            any_binary = True
    document: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        document["id"] = request_id
    document["outputs"] = entries
    # orjson is several times faster, but writes NaN and infinities as null.
    if finite:
        header = orjson.dumps(document)
    else:
        header = json.dumps(document, separators=_SEPARATORS).encode("utf-8")
    if not any_binary:
        return header, None
    return header + b"".join(chunks), len(header)


def selection(
    outputs: dict[str, dict], requested: list[RequestedOutput] | None, binary_default: bool
) -> list[tuple[str, bool]]:
    """The outputs to send, in order, each with whether it goes as binary data."""
    if requested is None:
        return [(name, binary_default) for name in outputs]
    for output in requested:
        if output.name not in outputs:
            raise InvalidInput(
                f"output {output.name!r} is not among the outputs; "
                f"expected one of {', '.join(map(repr, outputs))}"
            )
    return [
        (output.name, output.parameters.get("binary_data", binary_default) is True)
        for output in requested
    ]


def output_entry(name: str, packed: dict, binary: bool) -> tuple[dict, bytes, bool]:
    """The response entry of one packed output, its binary data (b"" when sent as JSON), and
    whether its JSON data is free of NaN and infinities."""
    entry: dict[str, Any] = {"name": name, "datatype": packed["datatype"], "shape": packed["shape"]}
    finite = True
    parameters: dict[str, Any] = {}
    if "json" in packed:
        parameters["content_type"] = "application/json"
        texts = [json.dumps(item, separators=_SEPARATORS, default=str) for item in packed["json"]]
        data: list = texts
        chunk = _serialize_bytes([text.encode("utf-8") for text in texts]) if binary else b""
    elif packed["datatype"] == "BYTES":
        elements = unpack(packed).ravel().tolist()
        data = [] if binary else _texts(elements, parameters)
        chunk = _serialize_bytes(elements) if binary else b""
    else:
        array = unpack(packed)
        data = [] if binary else array.ravel().tolist()
        chunk = array.astype(array.dtype.newbyteorder("<")).tobytes() if binary else b""
        finite = binary or array.dtype.kind != "f" or bool(np.isfinite(array).all())
    if binary:
        parameters["binary_data_size"] = len(chunk)
    if parameters:
        entry["parameters"] = parameters
    if not binary:
        entry["data"] = data
    return entry, chunk, finite


def _texts(elements: list[bytes], parameters: dict) -> list[str]:
    """BYTES elements as JSON strings: UTF-8 text, or all base64 when any is not UTF-8."""
    try:
        return [element.decode("utf-8") for element in elements]
    except UnicodeDecodeError:
        parameters["content_encoding"] = "base64"
        return [b64(element) for element in elements]


def _serialize_bytes(elements: list[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(element)) + element for element in elements)
