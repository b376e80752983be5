"""Checks on what clients send: the request document, JSON data values, and a model's signature.

codec.parse_request builds on the document checks here; validate() compares a parsed request
with the signature that inspect.py stored for the model.
"""

from __future__ import annotations

import contextlib
import json
import math
import struct
from itertools import chain
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import orjson

from inference_farm.errors import InvalidInput
from inference_farm.protocol.datatypes import NUMPY_FROM_OIP

if TYPE_CHECKING:
    from inference_farm.protocol.request import InferRequest

MAX_RANK = 32  # numpy 1 holds at most 32 dimensions, numpy 2 64
MAX_SIZE = 2**59  # elements of 8 bytes whose size numpy can still count in an int64
LENGTH_HEADER = "Inference-Header-Content-Length"
_LENGTH = struct.Struct("<I")
_FLOATS = ("FP16", "FP32", "FP64")
_WORDS = {
    str: "a string",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    dict: "an object",
    list: "a list",
    type(None): "null",
}


class InputHead(NamedTuple):
    """An input's metadata, checked before any of its data is decoded."""

    name: str
    datatype: str
    shape: list[int]
    parameters: dict
    item: dict


# --- the request document ---


def _loads(text: str, strict: bool) -> Any:
    """json.loads, or (not strict) orjson where it can: about five times faster on numbers.

    orjson reads integers over 64 bits as floats. No valid request holds one where an
    integer must be (no integer datatype reaches that far), so a request refused after the
    fast parse is parsed again strictly, for the exact reason.
    """
    if not strict:
        # What orjson refuses, json may take (NaN), or else words its own message.
        with contextlib.suppress(orjson.JSONDecodeError):
            return orjson.loads(text)
    return json.loads(text)


def load_document(header: bytes, strict: bool = True) -> dict:
    """The JSON object in an infer request's header; strict=False: see _loads."""
    try:
        document = _loads(header.decode("utf-8"), strict)
    except UnicodeDecodeError as exc:
        reason = f"not UTF-8 ({exc.reason} at byte {exc.start})"
        raise InvalidInput(f"the request body is not valid JSON: {reason}") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidInput("the request body must be a JSON object")
    return document


def parameters_of(item: dict, what: str) -> dict:
    """The parameters object of a request, input or output; {} when absent."""
    parameters = item.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise InvalidInput(f"{what}: parameters must be a JSON object")
    return parameters


def check_flag(parameters: dict, key: str, what: str) -> None:
    """Raise InvalidInput unless parameters[key] is absent, true or false."""
    if key in parameters and not isinstance(parameters[key], bool):
        raise InvalidInput(f"{what}: parameters.{key} must be true or false")


def input_heads(inputs: Any, max_elements: int) -> list[InputHead]:
    """The checked metadata of a request's inputs, within max_elements in all."""
    if not isinstance(inputs, list) or not inputs:
        raise InvalidInput("inputs must be a non-empty list")
    heads: list[InputHead] = []
    for index, item in enumerate(inputs):
        name = _entry_name(item, f"inputs[{index}]")
        if any(head.name == name for head in heads):
            raise InvalidInput(f"input {name!r} appears more than once")
        datatype = item.get("datatype")
        if not isinstance(datatype, str) or datatype not in NUMPY_FROM_OIP:
            raise InvalidInput(
                f"input {name!r}: unknown datatype {datatype!r}; "
                f"expected one of {', '.join(NUMPY_FROM_OIP)}"
            )
        shape = check_shape(f"input {name!r}", item.get("shape"), max_elements)
        heads.append(InputHead(name, datatype, shape, parameters_of(item, f"input {name!r}"), item))
    # Counted from the shapes alone, so nothing is allocated for absurd dimensions.
    total = sum(math.prod(head.shape) for head in heads)
    if total > max_elements:
        raise InvalidInput(
            f"the request holds {total} elements, more than the limit of {max_elements}"
        )
    return heads


def requested_outputs(outputs: Any) -> list[tuple[str, dict]] | None:
    """The names and parameters of the outputs a request asks for; None for all of them."""
    if outputs is None:
        return None
    if not isinstance(outputs, list):
        raise InvalidInput("outputs must be a list")
    requested: list[tuple[str, dict]] = []
    for index, item in enumerate(outputs):
        name = _entry_name(item, f"outputs[{index}]")
        if any(known == name for known, _ in requested):
            raise InvalidInput(f"output {name!r} is requested more than once")
        parameters = parameters_of(item, f"output {name!r}")
        check_flag(parameters, "binary_data", f"output {name!r}")
        if "classification" in parameters:
            raise InvalidInput(f"output {name!r}: the classification extension is not supported")
        requested.append((name, parameters))
    # Like Triton, an empty list asks for every output.
    return requested or None


def _entry_name(item: Any, where: str) -> str:
    if not isinstance(item, dict):
        raise InvalidInput(f"{where} must be a JSON object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidInput(f"{where} needs a name (a non-empty string)")
    return name


def check_shape(what: str, shape: Any, limit: int = MAX_SIZE) -> list[int]:
    """shape as a list of non-negative ints that numpy can hold, within limit elements."""
    if not isinstance(shape, list):
        raise InvalidInput(f"{what}: shape must be a list of integers, got {_word(shape)}")
    wrong = [dim for dim in shape if type(dim) is not int]
    if wrong:
        raise InvalidInput(f"{what}: shape must be a list of integers, got {_word(wrong[0])} in it")
    if len(shape) > MAX_RANK:
        raise InvalidInput(f"{what}: shape has {len(shape)} dimensions, more than {MAX_RANK}")
    if any(dim < 0 for dim in shape):
        raise InvalidInput(f"{what}: negative dimension in shape {shape}")
    # Zeros left out: numpy refuses an empty array whose other dimensions are absurd.
    if math.prod(dim for dim in shape if dim) > limit:
        raise InvalidInput(f"{what}: shape {shape} is beyond the limit of {limit} elements")
    return shape


# --- binary data ---


def binary_chunk(head: InputHead, binary: bytes, offset: int) -> bytes:
    """The binary data of one input, which starts at offset, checked against its shape."""
    what = f"input {head.name!r}"
    size = head.parameters["binary_data_size"]
    if type(size) is not int or size < 0:
        raise InvalidInput(f"{what}: binary_data_size must be a non-negative integer")
    if head.datatype != "BYTES":
        needed = math.prod(head.shape) * NUMPY_FROM_OIP[head.datatype].itemsize
        if size != needed:
            raise InvalidInput(
                f"{what}: binary_data_size {size} does not match shape {head.shape} "
                f"of {head.datatype} ({needed} bytes)"
            )
    if offset + size > len(binary):
        raise InvalidInput(
            f"{what}: binary data is missing; binary_data_size is {size} "
            f"but only {len(binary) - offset} bytes are left"
        )
    return binary[offset : offset + size]


def split_bytes(what: str, chunk: bytes, shape: list[int]) -> list[bytes]:
    """The elements of binary BYTES data: each a 4-byte little-endian length, then the bytes."""
    count = math.prod(shape)
    items, offset = [], 0
    for index in range(count):
        if offset + _LENGTH.size > len(chunk):
            raise InvalidInput(
                f"{what}: shape {shape} needs {count} elements, got {index} in the binary data"
            )
        (length,) = _LENGTH.unpack_from(chunk, offset)
        offset += _LENGTH.size
        if offset + length > len(chunk):
            raise InvalidInput(
                f"{what}: BYTES element {index} of {length} bytes runs past the end of "
                "its binary data"
            )
        items.append(chunk[offset : offset + length])
        offset += length
    if offset != len(chunk):
        raise InvalidInput(
            f"{what}: binary data holds more than the {count} BYTES elements of shape {shape}"
        )
    return items


# --- JSON data ---


def data_to_array(what: str, data: Any, datatype: str, shape: list[int]) -> np.ndarray:
    """JSON data, flat or nested in row-major order, as an array of datatype and shape."""
    flat = _flatten(what, data)
    count = math.prod(shape)
    if len(flat) != count:
        raise InvalidInput(f"{what}: shape {shape} needs {count} elements, got {len(flat)}")
    _check_types(what, flat, datatype)
    try:
        array = _convert(what, flat, datatype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(f"{what}: data cannot be converted to {datatype}: {exc}") from None
    return array.reshape(shape)


def _flatten(what: str, data: Any) -> list:
    if not isinstance(data, list):
        raise InvalidInput(f"{what}: data must be a list, got {_word(data)}")
    flat = data
    # One level per pass, so deep nesting cannot exhaust the stack.
    while flat and type(flat[0]) is list:
        if set(map(type, flat)) != {list}:
            raise InvalidInput(f"{what}: data mixes lists and values at the same depth")
        flat = list(chain.from_iterable(flat))
    return flat


def _check_types(what: str, flat: list, datatype: str) -> None:
    if datatype == "BYTES":
        allowed, expected = {str}, "strings"
    elif datatype == "BOOL":
        allowed, expected = {bool}, "true or false"
    elif datatype in _FLOATS:
        allowed, expected = {int, float}, "numbers"
    else:
        allowed, expected = {int}, "integers"
    if not set(map(type, flat)) <= allowed:
        wrong = next(item for item in flat if type(item) not in allowed)
        raise InvalidInput(f"{what}: data must be {expected} for {datatype}, got {_word(wrong)}")


def _convert(what: str, flat: list, datatype: str) -> np.ndarray:
    dtype = NUMPY_FROM_OIP[datatype]
    if datatype == "BYTES":
        try:
            encoded = [item.encode("utf-8") for item in flat]
        except UnicodeEncodeError:
            raise InvalidInput(f"{what}: data holds a string that is not valid Unicode") from None
        return np.fromiter(encoded, dtype=object, count=len(encoded))
    if datatype in _FLOATS:
        wide = np.array(flat, dtype=np.float64)
        with np.errstate(over="ignore"):
            array = wide.astype(dtype)
        overflow = np.isinf(array) & np.isfinite(wide)
        if overflow.any():
            value = float(wide[overflow][0])
            raise InvalidInput(f"{what}: value {value!r} is out of range for {datatype}")
        return array
    if datatype != "BOOL" and flat:
        info = np.iinfo(dtype)
        for value in (min(flat), max(flat)):
            if not info.min <= value <= info.max:
                raise InvalidInput(f"{what}: value {value} is out of range for {datatype}")
    return np.array(flat, dtype=dtype)


def _word(value: Any) -> str:
    return _WORDS.get(type(value), type(value).__name__)


# --- against a signature ---


def validate(request: InferRequest, signature: dict) -> None:
    """Raise InvalidInput unless request's inputs and requested outputs fit signature."""
    expected = {item["name"]: item for item in signature.get("inputs", [])}
    for tensor in request.inputs:
        spec = expected.get(tensor.name)
        if spec is None:
            raise InvalidInput(
                f"input {tensor.name!r} is not an input of the model; expected {_names(expected)}"
            )
        if tensor.datatype != spec["datatype"] or not _fits(tensor.shape, spec.get("shape")):
            shape = spec.get("shape")
            wanted = "any shape" if shape is None else f"shape {shape}"
            raise InvalidInput(
                f"input {tensor.name!r}: expected {spec['datatype']} with {wanted}, "
                f"got {tensor.datatype} {tensor.shape}"
            )
    given = {tensor.name for tensor in request.inputs}
    missing = [name for name in expected if name not in given]
    if missing:
        raise InvalidInput(f"input {missing[0]!r} is missing; the model needs {_names(expected)}")
    outputs = [item["name"] for item in signature.get("outputs", [])]
    for output in request.outputs or []:
        if output.name not in outputs:
            raise InvalidInput(
                f"output {output.name!r} is not an output of the model; expected {_names(outputs)}"
            )


def _fits(shape: list[int], expected: list[int] | None) -> bool:
    if expected is None:
        return True
    if len(shape) != len(expected):
        return False
    return all(want in (-1, dim) for dim, want in zip(shape, expected, strict=True))


def _names(names: Any) -> str:
    if not names:
        return "none"
    return "one of " + ", ".join(repr(name) for name in names)
