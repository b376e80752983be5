"""Sample inputs of a model version (Triton's model_warmup): parsed, stored, checked.

An upload may carry them as an `.npz` file (one array per input, by name) or as an Open
Inference Protocol infer request in JSON. They are stored in one canonical form, msgpack of
packed tensors (never pickle), and checked against the signature once it is known.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from typing import Any

import msgpack
import numpy as np

from inference_farm.errors import InvalidInput, PayloadTooLarge
from inference_farm.protocol.codec import InferRequest, InputTensor, parse_request, validate
from inference_farm.protocol.packing import datatype_of, pack, unpack

Samples = dict[str, np.ndarray]
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, and an empty one
MAX_INPUTS = 1024
HELP = (
    "expected an .npz file (numpy.savez, one array per input name) or an Open Inference "
    'Protocol infer request in JSON ({"inputs": [{"name", "datatype", "shape", "data"}]})'
)


def parse(content: bytes, max_elements: int) -> Samples:
    """The samples in an uploaded warmup file; InvalidInput saying what was expected."""
    if not content:
        raise InvalidInput(f"the warmup file is empty: {HELP}")
    if content.startswith(ZIP_MAGIC):
        samples = _from_npz(content, max_elements)
    elif content.lstrip()[:1] == b"{":
        samples = _from_request(content, max_elements)
    else:
        raise InvalidInput(f"the warmup file is neither .npz nor JSON: {HELP}")
    if not samples:
        raise InvalidInput(f"the warmup file holds no inputs: {HELP}")
    return samples


def _from_npz(content: bytes, max_elements: int) -> Samples:
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            members = archive.infolist()
        if len(members) > MAX_INPUTS:
            raise InvalidInput(f"the warmup file has {len(members)} arrays; at most {MAX_INPUTS}")
        declared = sum(member.file_size for member in members)
        if declared > max_elements * 16 + 4096 * len(members):  # no zip bombs
            raise PayloadTooLarge(
                f"the warmup file unpacks to {declared} bytes, over max_tensor_elements "
                f"({max_elements}) of the widest datatype"
            )
        with np.load(io.BytesIO(content), allow_pickle=False) as npz:
            samples = {name: npz[name] for name in npz.files}
    except ValueError as exc:
        if "pickle" not in str(exc):
            raise InvalidInput(f"the warmup .npz is not readable: {exc}") from None
        raise InvalidInput(  # object arrays need pickle, which is refused
            f"the warmup .npz cannot be read without pickle ({exc}); send BYTES samples "
            "as an Open Inference Protocol JSON request"
        ) from None
    except (
        zipfile.BadZipFile,
        OSError,
        EOFError,
        NotImplementedError,
        RuntimeError,
        zlib.error,
    ) as exc:
        raise InvalidInput(f"the warmup .npz is not readable: {exc}") from None
    for name, array in samples.items():
        if not isinstance(array, np.ndarray):  # numpy hands back a member that is not .npy
            raise InvalidInput(f"the warmup .npz member {name!r} is not a numpy array (.npy)")
        try:
            datatype_of(array)
        except Exception:
            raise InvalidInput(
                f"warmup input {name!r} has dtype {array.dtype}, which no Open Inference "
                "Protocol datatype names"
            ) from None
    _check_elements(samples, max_elements)
    return samples


def _from_request(content: bytes, max_elements: int) -> Samples:
    try:
        request = parse_request(content, None, max_elements=max_elements)
    except InvalidInput as exc:
        raise InvalidInput(f"the warmup request is not valid: {exc.message}") from None
    names = [tensor.name for tensor in request.inputs]
    if len(set(names)) != len(names):
        raise InvalidInput("the warmup request names an input twice")
    return {tensor.name: tensor.array for tensor in request.inputs}


def _check_elements(samples: Samples, max_elements: int) -> None:
    total = sum(int(array.size) for array in samples.values())
    if total > max_elements:
        raise PayloadTooLarge(
            f"the warmup samples hold {total} elements; max_tensor_elements is {max_elements}"
        )


def encode(samples: Samples) -> bytes:
    """The canonical stored form of samples."""
    packed = {name: pack(array, datatype_of(array), raw=True) for name, array in samples.items()}
    return msgpack.packb(packed, use_bin_type=True)


def decode(content: bytes) -> Samples:
    """Samples from their canonical stored form."""
    try:
        packed: Any = msgpack.unpackb(content, raw=False)
    except Exception as exc:
        raise InvalidInput(f"the stored warmup samples are not readable: {exc}") from None
    if not isinstance(packed, dict):
        raise InvalidInput("the stored warmup samples are not a mapping of inputs")
    return {str(name): unpack(tensor) for name, tensor in packed.items()}


def check(samples: Samples, signature: dict) -> None:
    """InvalidInput naming the input unless samples fit signature (names, datatypes, shapes)."""
    tensors = []
    for name, array in samples.items():
        datatype = datatype_of(array)
        tensors.append(InputTensor(name, datatype, list(array.shape), {}, array))
    try:
        validate(InferRequest(None, {}, tensors, None), signature)
    except InvalidInput as exc:
        raise InvalidInput(f"warmup sample: {exc.message}") from None
