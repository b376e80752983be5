"""Tensors as dicts that cross Celery: pack in the API or worker, unpack on the other side.

Tensors travel as {"datatype", "shape", "b64"} (JSON jobs) or "raw" bytes (msgpack jobs),
BYTES tensors as "items" (base64 per element); non-tensor outputs as
{"datatype": "BYTES", "shape": [n], "json": [...]}.
"""

from __future__ import annotations

import base64
import binascii
import math
from typing import Any

import numpy as np

from inference_farm.errors import FarmError, InvalidInput
from inference_farm.protocol.datatypes import NUMPY_FROM_OIP
from inference_farm.protocol.validation import check_shape

_OIP_FROM_NUMPY = {dtype: name for name, dtype in NUMPY_FROM_OIP.items()}


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
        items = [b64(_as_bytes(item)) for item in array.ravel().tolist()]
        return {"datatype": datatype, "shape": shape, "items": items}
    try:
        data = array.astype(dtype.newbyteorder("<"), casting="same_kind", copy=False)
    except TypeError:
        raise InvalidInput(f"cannot pack {array.dtype} data as {datatype}") from None
    if raw:
        return {"datatype": datatype, "shape": shape, "raw": data.tobytes()}
    return {"datatype": datatype, "shape": shape, "b64": b64(data.tobytes())}


def unpack(packed: dict) -> np.ndarray:
    """The array in a dict made by pack or pack_outputs, checked against its shape."""
    if not isinstance(packed, dict):
        raise InvalidInput("a packed tensor must be a dict")
    datatype = packed.get("datatype")
    dtype = _dtype(datatype)
    shape = check_shape(f"packed {datatype}", packed.get("shape"))
    if "json" in packed:
        return object_array(_packed_list(packed, "json", shape), shape)
    if datatype == "BYTES":
        items = _packed_list(packed, "items", shape)
        return object_array([_unb64(item) for item in items], shape)
    raw = packed["raw"] if isinstance(packed.get("raw"), bytes) else _unb64(packed.get("b64"))
    needed = math.prod(shape) * dtype.itemsize
    if len(raw) != needed:
        raise InvalidInput(
            f"packed {datatype} of shape {shape} needs {needed} bytes, got {len(raw)}"
        )
    return array_from_raw(raw, dtype, shape)


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


def b64(data: bytes) -> str:
    """data as base64 text."""
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise InvalidInput("packed data must be base64 text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("packed data is not valid base64") from None


def array_from_raw(raw: bytes, dtype: np.dtype, shape: list[int]) -> np.ndarray:
    """The array of little-endian raw bytes, as dtype in native order, in shape."""
    if dtype == np.bool_:
        # Any nonzero byte is true, as in C; a view as bool would keep the raw byte.
        return (np.frombuffer(raw, dtype=np.uint8) != 0).reshape(shape)
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)


def object_array(items: list, shape: list[int]) -> np.ndarray:
    """items, each kept whole, as an object array of shape."""
    # fromiter keeps list items whole; np.array would try to nest them.
    return np.fromiter(items, dtype=object, count=len(items)).reshape(shape)
