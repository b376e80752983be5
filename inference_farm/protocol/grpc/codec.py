"""ModelInferRequest in, ModelInferResponse out: the gRPC side of the Open Inference Protocol.

Input data comes either all in raw_input_contents (one entry per input, in input order;
numeric data little-endian, BYTES elements each a 4-byte little-endian length and the
bytes, as tritonclient sends them) or all in the typed contents fields. The metadata checks,
limits, BYTES framing, output selection and error messages are the REST codec's own.
Outputs always go back as raw_output_contents, as Triton sends them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from inference_farm.errors import InvalidInput
from inference_farm.protocol.codec import output_entry, selection
from inference_farm.protocol.datatypes import NUMPY_FROM_OIP
from inference_farm.protocol.grpc import inference_pb2
from inference_farm.protocol.packing import array_from_raw, object_array
from inference_farm.protocol.request import InferRequest, InputTensor, RequestedOutput
from inference_farm.protocol.validation import (
    InputHead,
    check_flag,
    data_to_array,
    input_heads,
    requested_outputs,
    split_bytes,
)

# The typed field of each datatype; FP16 has none, its data travels raw only.
CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}

InputProto = inference_pb2.ModelInferRequest.InferInputTensor


# --- parsing requests ---


def parse_infer(request: inference_pb2.ModelInferRequest, max_elements: int) -> InferRequest:
    """The request as the REST codec would parse it; else InvalidInput naming the input."""
    parameters = parameters_from_proto(request.parameters)
    check_flag(parameters, "binary_data_output", "the request")
    heads = input_heads([_input_item(tensor) for tensor in request.inputs], max_elements)
    arrays = _arrays(request, heads)
    inputs = [
        InputTensor(head.name, head.datatype, head.shape, head.parameters, array)
        for head, array in zip(heads, arrays, strict=True)
    ]
    items = [
        {"name": output.name, "parameters": parameters_from_proto(output.parameters)}
        for output in request.outputs
    ]
    requested = requested_outputs(items)
    outputs = None if requested is None else [RequestedOutput(*pair) for pair in requested]
    return InferRequest(request.id or None, parameters, inputs, outputs)


def _arrays(request: inference_pb2.ModelInferRequest, heads: list[InputHead]) -> list[np.ndarray]:
    """Each input's data, from raw_input_contents or else from its typed contents."""
    raw = list(request.raw_input_contents)
    if not raw:
        pairs = zip(heads, request.inputs, strict=True)
        return [_from_contents(head, tensor.contents) for head, tensor in pairs]
    _check_raw_layout(request.inputs, raw)
    pairs = enumerate(zip(heads, raw, strict=True))
    return [_from_raw(head, chunk, index) for index, (head, chunk) in pairs]


def parameters_from_proto(parameters: Any) -> dict:
    """A map of InferParameter as plain Python values (None for one with no value set)."""
    plain = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        plain[key] = None if choice is None else getattr(parameter, choice)
    return plain


def _input_item(tensor: InputProto) -> dict:
    """An input's metadata in the form the REST document checks take."""
    return {
        "name": tensor.name,
        "datatype": tensor.datatype,
        "shape": list(tensor.shape),
        "parameters": parameters_from_proto(tensor.parameters),
    }


def _check_raw_layout(inputs: Any, raw: list[bytes]) -> None:
    """Raw data is one entry per input, and then no input carries typed contents."""
    for tensor in inputs:
        if tensor.contents.ListFields():
            raise InvalidInput(
                f"input {tensor.name!r} has contents but the request also has "
                "raw_input_contents; send every input's data one way, all raw or all in contents"
            )
    if len(raw) < len(inputs):
        raise InvalidInput(
            f"input {inputs[len(raw)].name!r} has no raw_input_contents entry: got {len(raw)} "
            f"for {len(inputs)} inputs; send one entry per input, in input order"
        )
    if len(raw) > len(inputs):
        raise InvalidInput(
            f"raw_input_contents has {len(raw)} entries for {len(inputs)} inputs "
            f"({', '.join(repr(tensor.name) for tensor in inputs)}); "
            "send one entry per input, in input order"
        )


def _from_raw(head: InputHead, chunk: bytes, index: int) -> np.ndarray:
    """One input's array from its raw_input_contents entry."""
    what = f"input {head.name!r}"
    _refuse_shared_memory(head)
    if head.datatype == "BYTES":
        return object_array(split_bytes(what, chunk, head.shape), head.shape)
    dtype = NUMPY_FROM_OIP[head.datatype]
    needed = math.prod(head.shape) * dtype.itemsize
    if len(chunk) != needed:
        raise InvalidInput(
            f"{what}: raw_input_contents[{index}] has {len(chunk)} bytes but shape "
            f"{head.shape} of {head.datatype} needs {needed}"
        )
    return array_from_raw(chunk, dtype, head.shape)


def _from_contents(head: InputHead, contents: Any) -> np.ndarray:
    """One input's array from its typed contents field."""
    what = f"input {head.name!r}"
    _refuse_shared_memory(head)
    expected = CONTENTS_FIELD.get(head.datatype)
    for field, _ in contents.ListFields():
        if field.name != expected:
            where = (
                "FP16 has no typed field; send FP16 data in raw_input_contents"
                if expected is None
                else f"{head.datatype} data goes in contents.{expected}"
            )
            raise InvalidInput(
                f"{what}: contents.{field.name} does not belong to {head.datatype}; {where}"
            )
    if expected is None:
        if math.prod(head.shape):
            raise InvalidInput(f"{what}: FP16 data can only be sent in raw_input_contents")
        return np.zeros(head.shape, dtype=np.float16)
    values = list(getattr(contents, expected))
    if not values and math.prod(head.shape):
        raise InvalidInput(
            f"{what} has no data; send it in contents.{expected}, "
            "or every input's data in raw_input_contents"
        )
    if head.datatype == "BYTES":
        count = math.prod(head.shape)
        if len(values) != count:
            raise InvalidInput(
                f"{what}: shape {head.shape} needs {count} elements, got {len(values)}"
            )
        return object_array(values, head.shape)
    return data_to_array(f"{what}: contents.{expected}", values, head.datatype, head.shape)


def _refuse_shared_memory(head: InputHead) -> None:
    if "shared_memory_region" in head.parameters:
        raise InvalidInput(f"input {head.name!r}: shared memory is not supported; send the data")


# --- building responses ---


def build_infer(
    name: str, version: str, request: InferRequest, outputs: dict[str, dict]
) -> inference_pb2.ModelInferResponse:
    """The answer: every selected output as raw_output_contents (as Triton does)."""
    response = inference_pb2.ModelInferResponse(
        model_name=name, model_version=version, id=request.id or ""
    )
    for output_name, _ in selection(outputs, request.outputs, True):
        entry, chunk, _ = output_entry(output_name, outputs[output_name], True)
        tensor = response.outputs.add(
            name=output_name, datatype=entry["datatype"], shape=entry["shape"]
        )
        for key, value in entry.get("parameters", {}).items():
            if key != "binary_data_size":  # the raw entry's own length says it
                set_parameter(tensor.parameters[key], value)
        response.raw_output_contents.append(chunk)
    return response


def set_parameter(parameter: Any, value: bool | int | float | str) -> None:
    """Set an InferParameter from a plain Python value."""
    if isinstance(value, bool):
        parameter.bool_param = value
    elif isinstance(value, int):
        parameter.int64_param = value
    elif isinstance(value, float):
        parameter.double_param = value
    else:
        parameter.string_param = str(value)
