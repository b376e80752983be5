"""The client's data: numpy arrays in Open Inference Protocol bodies, and the files it reads.

Binary bodies follow Triton's binary tensor extension: a JSON header whose length is sent in
Inference-Header-Content-Length, then each binary tensor's raw little-endian bytes in order;
BYTES elements are a 4-byte little-endian length and the bytes. Imports only numpy.
"""

from __future__ import annotations

import base64
import json
import math
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

JSON_CONTENT = "application/json"
CHUNK = 1 << 20
_LENGTH = struct.Struct("<I")
_SEPARATORS = (",", ":")
DTYPES: dict[str, np.dtype] = {
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
_BY_KIND = {(dtype.kind, dtype.itemsize): name for name, dtype in DTYPES.items()}


def datatype_of(array: np.ndarray) -> str:
    """The Open Inference Protocol datatype of array: bool, ints, floats; str/bytes are BYTES."""
    dtype = np.asarray(array).dtype
    if dtype.kind in "OSU":
        return "BYTES"
    try:
        return _BY_KIND[dtype.kind, dtype.itemsize]
    except KeyError:
        raise ValueError(f"numpy dtype {dtype} has no Open Inference Protocol datatype") from None


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, bytes | bytearray | memoryview):
        return bytes(item)
    return str(item).encode("utf-8")


def raw_data(array: np.ndarray, datatype: str) -> bytes:
    """array's binary data: row-major little-endian, or length-prefixed BYTES elements."""
    if datatype == "BYTES":
        items = [_as_bytes(item) for item in array.ravel().tolist()]
        return b"".join(_LENGTH.pack(len(item)) + item for item in items)
    return array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes(order="C")


def encode_request(
    inputs: dict[str, np.ndarray],
    outputs: list[str] | None = None,
    parameters: dict[str, Any] | None = None,
) -> tuple[bytes, int]:
    """A binary infer request body asking for binary outputs, and its JSON header's length."""
    entries, chunks = [], []
    for name, value in inputs.items():
        array = np.asarray(value)
        datatype = datatype_of(array)
        chunk = raw_data(array, datatype)
        chunks.append(chunk)
        entries.append({"name": name, "datatype": datatype, "shape": list(array.shape),
                        "parameters": {"binary_data_size": len(chunk)}})  # fmt: skip
    document: dict[str, Any] = {"inputs": entries}
    parameters = dict(parameters or {})
    if outputs is None:
        parameters["binary_data_output"] = True
    else:
        document["outputs"] = [{"name": name, "parameters": {"binary_data": True}}
                               for name in outputs]  # fmt: skip
    if parameters:
        document["parameters"] = parameters
    header = json.dumps(document, separators=_SEPARATORS).encode("utf-8")
    return header + b"".join(chunks), len(header)


def json_inputs(inputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """Inputs as Open Inference Protocol JSON: flat data, BYTES as UTF-8 strings."""
    entries = []
    for name, value in inputs.items():
        array = np.asarray(value)
        datatype = datatype_of(array)
        data = array.ravel().tolist()
        if datatype == "BYTES":
            try:
                data = [_as_bytes(item).decode("utf-8") for item in data]
            except UnicodeDecodeError:
                raise ValueError(f"input {name!r}: JSON carries UTF-8 text only") from None
        entries.append({"name": name, "datatype": datatype, "shape": list(array.shape),
                        "data": data})  # fmt: skip
    return entries


def job_request(
    model: str, inputs: dict[str, np.ndarray], version: str | None, outputs: list[str] | None,
    priority: int | None, timeout: float | None,
) -> dict[str, Any]:  # fmt: skip
    """One job as POST /v1/jobs takes it, with JSON inputs; None leaves a field out."""
    item: dict[str, Any] = {"model": model, "inputs": json_inputs(inputs)}
    optional = {"version": version, "priority": priority, "timeout": timeout}
    item.update({key: value for key, value in optional.items() if value is not None})
    if outputs is not None:
        item["outputs"] = [{"name": name} for name in outputs]
    return item


def decode_response(body: bytes, header_length: int | None) -> dict[str, Any]:
    """The outputs of an infer response body, JSON or binary, by name."""
    if header_length is None:
        header, binary = body, b""
    else:
        header, binary = body[:header_length], body[header_length:]
    return decode_outputs(json.loads(header.decode("utf-8")), binary)


def decode_outputs(document: dict[str, Any], binary: bytes = b"") -> dict[str, Any]:
    """Arrays (or lists of JSON values for non-tensor outputs) from a response document."""
    decoded, offset = {}, 0
    for entry in document.get("outputs") or []:
        size = (entry.get("parameters") or {}).get("binary_data_size")
        chunk = None
        if size is not None:
            chunk, offset = binary[offset : offset + size], offset + size
            if len(chunk) != size:
                raise ValueError(f"output {entry['name']!r}: the binary data is cut short")
        decoded[entry["name"]] = decode_output(entry, chunk)
    return decoded


def decode_output(entry: dict[str, Any], chunk: bytes | None) -> Any:
    """One output entry (name, datatype, shape, parameters) and its raw data, decoded."""
    parameters = entry.get("parameters") or {}
    datatype, shape = entry["datatype"], list(entry["shape"])
    if datatype == "BYTES":
        items = _bytes_items(entry, chunk, math.prod(shape))
        if parameters.get("content_type") == JSON_CONTENT:
            return [json.loads(item) for item in items]
        array = np.empty(len(items), dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = DTYPES[datatype]
    if chunk is None:
        return np.array(entry.get("data", []), dtype=dtype).reshape(shape)
    if dtype == np.bool_:
        return (np.frombuffer(chunk, dtype=np.uint8) != 0).reshape(shape)
    return np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).astype(dtype).reshape(shape)


def _bytes_items(entry: dict[str, Any], chunk: bytes | None, count: int) -> list[bytes]:
    """The elements of a BYTES output, from its binary data or its JSON strings."""
    if chunk is None:
        texts = np.array(entry.get("data", []), dtype=object).ravel().tolist()
        if (entry.get("parameters") or {}).get("content_encoding") == "base64":
            return [base64.b64decode(text) for text in texts]
        return [text.encode("utf-8") for text in texts]
    items, offset = [], 0
    while offset < len(chunk):
        (length,) = _LENGTH.unpack_from(chunk, offset)
        items.append(chunk[offset + _LENGTH.size : offset + _LENGTH.size + length])
        offset += _LENGTH.size + length
    if len(items) != count or offset != len(chunk):
        raise ValueError(f"output {entry['name']!r}: BYTES data does not match its shape")
    return items


# --- files: what the CLI reads and writes ---


class ProgressReader:
    """A file to upload that reports how many bytes were read so far."""

    def __init__(self, handle: BinaryIO, report: Callable[[int], None] | None) -> None:
        self.handle, self.report = handle, report

    def fileno(self) -> int:
        """The file's descriptor, so the upload is sent with a Content-Length."""
        return self.handle.fileno()

    def seek(self, offset: int, whence: int = 0) -> int:
        """Seek the underlying file."""
        return self.handle.seek(offset, whence)

    def tell(self) -> int:
        """Position in the underlying file."""
        return self.handle.tell()

    def read(self, size: int = -1) -> bytes:
        """Read up to size bytes (a chunk when size is unset) and report how many."""
        chunk = self.handle.read(CHUNK if size is None or size < 0 else size)
        if self.report and chunk:
            self.report(len(chunk))
        return chunk


def read_input(spec: str) -> dict[str, np.ndarray]:
    """The arrays an --input names: NAME=FILE (.npy, .npz key NAME, .json), or FILE.npz."""
    name, separator, file = spec.partition("=")
    if not separator:
        name, file = "", spec
    path = Path(file)
    if not path.is_file():
        raise ValueError(f"input file not found: {file}")
    if not name and path.suffix != ".npz":
        raise ValueError(f"name the input of {file}: --input NAME={file}")
    try:
        arrays = _load(path, name)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{file} does not hold an array: {exc}") from None
    for key, array in arrays.items():
        if array.dtype.kind not in "biufSU" or (array.dtype.kind == "f" and array.itemsize > 8):
            raise ValueError(f"{file}: {key!r} is not an array of numbers, booleans or text")
    return arrays


def _load(path: Path, name: str) -> dict[str, np.ndarray]:
    if path.suffix == ".json":
        return {name: _from_json(json.loads(path.read_text(encoding="utf-8")))}
    if path.suffix == ".npy":
        return {name: np.load(path, allow_pickle=False)}
    if path.suffix != ".npz":
        raise ValueError("expected a .npy, .npz or .json file")
    with np.load(path, allow_pickle=False) as archive:
        if not name:
            return {key: archive[key] for key in archive.files}
        if name not in archive.files:
            raise ValueError(f"no array {name!r} in it; it has {', '.join(archive.files)}")
        return {name: archive[name]}


def _from_json(value: Any) -> np.ndarray:
    if isinstance(value, dict) and "data" in value:
        datatype = value.get("datatype")
        if datatype is not None and datatype not in DTYPES:
            raise ValueError(f"unknown datatype {datatype!r}")
        dtype = str if datatype == "BYTES" else DTYPES.get(datatype)
        array = np.array(value["data"], dtype=dtype)
        return array.reshape(value["shape"]) if "shape" in value else array
    if not isinstance(value, list):
        raise ValueError('expected a list, or {"data": [...], "datatype": ...}')
    return np.array(value)


def outputs_to_json(outputs: dict[str, Any]) -> dict[str, Any]:
    """Outputs as JSON: {name: {"shape", "datatype", "data"}}; non-tensor outputs lack datatype."""
    shown: dict[str, Any] = {}
    for name, value in outputs.items():
        if not isinstance(value, np.ndarray):
            shown[name] = {"shape": [len(value)], "data": value}
            continue
        data = value.tolist()
        if value.dtype == object:
            data = _texts(value)
        shown[name] = {"shape": list(value.shape), "datatype": datatype_of(value), "data": data}
    return shown


def _texts(array: np.ndarray) -> Any:
    """A BYTES array's elements as nested lists of text (undecodable bytes as \\x escapes)."""
    flat = [_as_bytes(item).decode("utf-8", "backslashreplace") for item in array.ravel()]
    return np.array(flat, dtype=object).reshape(array.shape).tolist()


def write_npz(outputs: dict[str, Any], path: Path) -> None:
    """Save outputs to an .npz that loads without pickle: text as str, JSON values as JSON text."""
    storable = {}
    for name, value in outputs.items():
        if not isinstance(value, np.ndarray):
            value = np.array([json.dumps(item, separators=_SEPARATORS) for item in value], str)
        elif value.dtype == object:
            items = [_as_bytes(item) for item in value.ravel()]
            try:
                value = np.array([item.decode("utf-8") for item in items], str).reshape(value.shape)
            except UnicodeDecodeError:
                value = np.array(items, dtype=bytes).reshape(value.shape)
        storable[name] = value
    with open(path, "wb") as handle:
        np.savez(handle, **storable)
