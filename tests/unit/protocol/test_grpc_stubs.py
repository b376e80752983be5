"""The committed gRPC modules match inference.proto, and its wire format is Triton's."""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pb2

from inference_farm.protocol.grpc import generate, inference_pb2

triton = pytest.importorskip("tritonclient.grpc.service_pb2")
SERVICE = "GRPCInferenceService"


def _fields(message) -> dict:
    """A message's fields and nested messages, by name: number, type, label and type name."""
    found = {
        field.name: (field.number, field.type, field.is_repeated, field.message_type
                     and field.message_type.full_name)
        for field in message.fields
    }  # fmt: skip
    found.update({nested.name: _fields(nested) for nested in message.nested_types})
    return found


def _all_messages(messages):
    for message in messages:
        yield message
        yield from _all_messages(message.nested_type)


def test_the_committed_modules_are_generated_from_the_proto() -> None:
    compiled = descriptor_pb2.FileDescriptorSet.FromString(generate.descriptor_set())
    [source] = compiled.file
    for message in _all_messages(source.message_type):
        for field in message.field:
            field.ClearField("json_name")  # protoc's python_out leaves the defaults out
    serialized = inference_pb2.DESCRIPTOR.serialized_pb
    committed = descriptor_pb2.FileDescriptorProto.FromString(serialized)
    assert committed == source, "stale: run python -m inference_farm.protocol.grpc.generate"


def test_every_message_and_rpc_has_triton_s_names_and_numbers() -> None:
    ours = inference_pb2.DESCRIPTOR
    for name, message in ours.message_types_by_name.items():
        assert _fields(message) == _fields(triton.DESCRIPTOR.message_types_by_name[name]), name
    theirs = triton.DESCRIPTOR.services_by_name[SERVICE]
    for method in ours.services_by_name[SERVICE].methods:
        twin = theirs.methods_by_name[method.name]
        assert method.full_name == twin.full_name == f"inference.{SERVICE}.{method.name}"
        assert method.input_type.full_name == twin.input_type.full_name
        assert method.output_type.full_name == twin.output_type.full_name


def test_the_messages_live_in_a_pool_of_their_own() -> None:
    # Triton's client registers the same names in protobuf's default pool.
    assert inference_pb2.DESCRIPTOR.pool is inference_pb2.POOL
