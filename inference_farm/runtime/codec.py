"""Open Inference Protocol bodies in and out, and tensors as JSON-safe dicts in between.

Requests may use Triton's binary tensor extension: Inference-Header-Content-Length bytes of
JSON, then the data of each input with parameters.binary_data_size, in input order; numeric
data is little-endian and row-major, BYTES elements each a 4-byte little-endian length and
the bytes. Tensors cross Celery as {"datatype", "shape", "b64"} or, for BYTES, "items" (base64
per element); non-tensor outputs as {"datatype": "BYTES", "shape": [n], "json": [...]}, sent
as one JSON text per element with parameters.content_type "application/json". BYTES outputs
that are not all UTF-8 go in JSON form as base64 with parameters.content_encoding "base64".
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from inference_farm.errors import FarmError, InvalidInput
from inference_farm.runtime.datatypes import NUMPY_FROM_OIP
from inference_farm.runtime.validation import (
    LENGTH_HEADER,
    InputHead,
    binary_chunk,
    check_flag,
    check_shape,
    data_to_array,
    input_heads,
    load_document,
    parameters_of,
    requested_outputs,
    split_bytes,
)
from inference_farm.runtime.validation import validate as validate

MAX_ELEMENTS = 2**24
_LENGTH = struct.Struct("<I")
_SEPARATORS = (",", ":")
_OIP_FROM_NUMPY = {dtype: name for name, dtype in NUMPY_FROM_OIP.items()}


@dataclass
class InputTensor:
    """One input of an infer request, decoded into a numpy array."""

    name: str
    datatype: str
    shape: list[int]
    parameters: dict
    array: np.ndarray


@dataclass
class RequestedOutput:
    """One entry of an infer request's outputs list."""

    name: str
    parameters: dict = field(default_factory=dict)

    @property
    def binary(self) -> bool:
        """Whether this output asks to be sent as binary data."""
        return self.parameters.get("binary_data") is True


@dataclass
class InferRequest:
    """A parsed infer request; outputs is None when the request names none (send all)."""

    id: str | None
    parameters: dict
    inputs: list[InputTensor]
    outputs: list[RequestedOutput] | None

    @property
    def binary_data_output(self) -> bool:
        """Whether outputs that do not say otherwise should be sent as binary data."""
        return self.parameters.get("binary_data_output") is True


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
                array = _object_array(split_bytes(what, chunk, head.shape), head.shape)
            else:
                array = _array_from_raw(chunk, NUMPY_FROM_OIP[head.datatype], head.shape)
        inputs.append(InputTensor(head.name, head.datatype, head.shape, head.parameters, array))
    if offset < len(binary):
        raise InvalidInput(
            f"{len(binary) - offset} bytes of binary data are left over after the inputs"
        )
    return inputs


# --- tensors as JSON-safe dicts ---


def datatype_of(array: np.ndarray) -> str:
    """The Open Inference Protocol datatype of array's dtype; strings and objects are BYTES."""
    dtype = array.dtype
    if dtype.kind in "OSU":
        return "BYTES"
    try:
        return _OIP_FROM_NUMPY[dtype.newbyteorder("=")]
    except KeyError:
        raise FarmError(f"numpy dtype {dtype} has no Open Inference Protocol datatype") from None


def pack(array: np.ndarray, datatype: str, raw: bool = False) -> dict:
    """array as datatype in a JSON-safe dict that unpack turns back into the same array;
    raw: numeric data as bytes ("raw"), for msgpack, rather than base64 text ("b64")."""
    dtype = _dtype(datatype)
    array = np.asarray(array)
    shape = list(array.shape)
    if datatype == "BYTES":
        items = [_b64(_as_bytes(item)) for item in array.ravel().tolist()]
        return {"datatype": datatype, "shape": shape, "items": items}
    try:
        data = array.astype(dtype.newbyteorder("<"), casting="same_kind", copy=False)
    except TypeError:
        raise InvalidInput(f"cannot pack {array.dtype} data as {datatype}") from None
    if raw:
        return {"datatype": datatype, "shape": shape, "raw": data.tobytes()}
    return {"datatype": datatype, "shape": shape, "b64": _b64(data.tobytes())}


def unpack(packed: dict) -> np.ndarray:
    """The array in a dict made by pack or pack_outputs, checked against its shape."""
    if not isinstance(packed, dict):
        raise InvalidInput("a packed tensor must be a dict")
    datatype = packed.get("datatype")
    dtype = _dtype(datatype)
    shape = check_shape(f"packed {datatype}", packed.get("shape"))
    if "json" in packed:
        return _object_array(_packed_list(packed, "json", shape), shape)
    if datatype == "BYTES":
        items = _packed_list(packed, "items", shape)
        return _object_array([_unb64(item) for item in items], shape)
    raw = packed["raw"] if isinstance(packed.get("raw"), bytes) else _unb64(packed.get("b64"))
    needed = math.prod(shape) * dtype.itemsize
    if len(raw) != needed:
        raise InvalidInput(
            f"packed {datatype} of shape {shape} needs {needed} bytes, got {len(raw)}"
        )
    return _array_from_raw(raw, dtype, shape)


def for_onnxruntime(array: np.ndarray, name: str) -> np.ndarray:
    """array as onnxruntime takes it: BYTES elements as str, which must be UTF-8."""
    if array.dtype != object:
        return array
    try:
        # onnxruntime feeds str(item) for anything but str, so bytes would arrive as "b'...'".
        texts = [item.decode() if isinstance(item, bytes) else str(item) for item in array.flat]
    except UnicodeDecodeError:
        raise InvalidInput(f"input {name!r}: string tensors take UTF-8 text only") from None
    return np.fromiter(texts, dtype=object, count=len(texts)).reshape(array.shape)


def pack_outputs(outputs: dict[str, Any], signature_outputs: list[dict]) -> dict[str, dict]:
    """A model run's outputs packed for a Celery message, in signature order."""
    kinds = {item["name"]: item.get("kind", "tensor") for item in signature_outputs}
    names = [name for name in kinds if name in outputs]
    names += [name for name in outputs if name not in kinds]
    packed = {}
    for name in names:
        packed[name] = _pack_output(outputs[name], kinds.get(name))
    return packed


def _pack_output(value: Any, kind: str | None) -> dict:
    if isinstance(value, np.ndarray) and kind in ("tensor", "optional", None):
        try:
            return pack(value, datatype_of(value))
        except FarmError:
            pass  # a dtype the protocol cannot name still gets through as JSON
    return _pack_json(value)


def _pack_json(value: Any) -> dict:
    """A non-tensor output, one JSON-safe value per element of a list or tuple."""
    elements = list(value) if isinstance(value, (list, tuple)) else [value]
    items = [_jsonable_or_str(element) for element in elements]
    return {"datatype": "BYTES", "shape": [len(items)], "json": items}


def _jsonable_or_str(value: Any) -> Any:
    try:
        return _jsonable(value)
    except Exception:
        try:
            return str(value)
        except Exception:
            return f"<unprintable {type(value).__name__}>"


def _jsonable(value: Any) -> Any:
    """value in plain JSON types: str keys and Python numbers; anything else as its str()."""
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {_key(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value)


def _key(key: Any) -> str:
    return str(key.item() if isinstance(key, np.generic) else key)


def _dtype(datatype: Any) -> np.dtype:
    try:
        return NUMPY_FROM_OIP[datatype]
    except (KeyError, TypeError):
        raise InvalidInput(f"unknown datatype {datatype!r}") from None


def _packed_list(packed: dict, key: str, shape: list[int]) -> list:
    items = packed.get(key)
    if not isinstance(items, list) or len(items) != math.prod(shape):
        raise InvalidInput(f"packed {key} must be a list of {math.prod(shape)} elements")
    return items


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, (bytearray, memoryview)):
        return bytes(item)
    return str(item).encode("utf-8", "surrogatepass")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise InvalidInput("packed data must be base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("packed data is not valid base64") from None


def _array_from_raw(raw: bytes, dtype: np.dtype, shape: list[int]) -> np.ndarray:
    if dtype == np.bool_:
        # Any nonzero byte is true, as in C; a view as bool would keep the raw byte.
        return (np.frombuffer(raw, dtype=np.uint8) != 0).reshape(shape)
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)


def _object_array(items: list, shape: list[int]) -> np.ndarray:
    # fromiter keeps list items whole; np.array would try to nest them.
    return np.fromiter(items, dtype=object, count=len(items)).reshape(shape)


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
    for name, binary in _selection(outputs, requested, binary_default):
        entry, chunk, finite_here = _output_entry(name, outputs[name], binary)
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


def _selection(
    outputs: dict[str, dict], requested: list[RequestedOutput] | None, binary_default: bool
) -> list[tuple[str, bool]]:
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


def _output_entry(name: str, packed: dict, binary: bool) -> tuple[dict, bytes, bool]:
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
        return [_b64(element) for element in elements]


def _serialize_bytes(elements: list[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(element)) + element for element in elements)
