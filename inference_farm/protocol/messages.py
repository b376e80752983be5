"""The messages between the API and the workers, each a type defined once here.

A job (farm.infer, one request with a job record), a coalesced job (farm.infer_batch,
groups of stacked requests answered on a reply list) and the replies. They travel as the
JSON or msgpack that Celery and Redis carry (never pickle), and are typed on both sides:
encode() gives the plain form, decode() checks a plain form and gives the type, or says
what is wrong. Each message carries `v`, so that a worker and an API of adjacent releases
can tell each other apart; a message with no `v` is from the release before typed messages.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from inference_farm.errors import InvalidInput

VERSION = 1
Tensor = dict[str, Any]  # a packed tensor, as protocol.packing writes it
T = TypeVar("T")


class Message(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=False):
    """Base of every message: unknown fields are ignored, for newer senders."""


class RequestMeta(Message):
    """What follows one request through a job: its deadline and its trace."""

    deadline: float | None = None  # epoch seconds; past it the request is not run
    request_id: str | None = None
    enqueued_at: float | None = None


class Group(Message):
    """Requests stacked along dim 0 into one tensor per input; rows says each one's share."""

    inputs: dict[str, Tensor]
    requests: list[RequestMeta]
    outputs: list[str] | None = None  # None: every output
    rows: list[int] | None = None  # None: a group of one request


class InferJob(Message):
    """One request as a job of its own (farm.infer); job_id names its job record."""

    model: str
    version: str
    inputs: dict[str, Tensor]
    outputs: list[str] | None = None
    deadline: float | None = None
    job_id: str | None = None
    request_id: str | None = None
    enqueued_at: float | None = None
    v: int = VERSION

    def group(self) -> Group:
        """The request as a group of its own."""
        meta = RequestMeta(self.deadline, self.request_id, self.enqueued_at)
        return Group(inputs=self.inputs, requests=[meta], outputs=self.outputs)


class BatchJob(Message):
    """Concurrent requests for one model version (farm.infer_batch), answered on reply_to."""

    model: str
    version: str
    groups: list[Group]
    reply_to: str = ""
    v: int = VERSION


class Reply(Message):
    """A worker's answer to one request: its outputs and timings, or why there are none."""

    ok: bool
    error: str | None = None
    status: int | None = None  # the HTTP status of the error
    expired: bool = False  # its deadline passed before it ran
    cancelled: bool = False
    duplicate: bool = False  # a redelivered copy of a job that already ran
    model_version: str | None = None
    outputs: dict[str, Tensor] | None = None
    decode_ms: float | None = None
    compute_ms: float | None = None
    encode_ms: float | None = None
    batch_size: int | None = None


class BatchReply(Message):
    """A worker's answer to a coalesced job: one reply per request, in order, or the error
    that every request gets."""

    ok: bool
    replies: list[Reply] = msgspec.field(default_factory=list)
    error: str | None = None
    status: int | None = None


class ReplyMessage(Message):
    """What a worker pushes onto an API process's reply list."""

    task_id: str
    reply: BatchReply
    v: int = VERSION


def encode(message: Message) -> dict[str, Any]:
    """The plain form of message, as JSON and msgpack carry it (bytes stay bytes)."""
    return msgspec.to_builtins(message, builtin_types=(bytes,))


def decode(kind: type[T], plain: Any) -> T:
    """The message of type kind in its plain form; InvalidInput saying what does not fit."""
    if isinstance(plain, dict) and int(plain.get("v") or 0) > VERSION:
        raise InvalidInput(
            f"a {kind.__name__} of message version {plain['v']}, newer than this release "
            f"reads ({VERSION}): upgrade the workers along with the API"
        )
    try:
        return msgspec.convert(plain, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidInput(f"a malformed {kind.__name__}: {exc}") from None


def decode_batch(plain: Any) -> BatchJob:
    """decode() of a coalesced job, including the release before groups, whose list of
    requests (each with inputs, outputs and a deadline) becomes one group per request."""
    if isinstance(plain, dict) and "groups" not in plain and "requests" in plain:
        requests = plain.get("requests") if isinstance(plain.get("requests"), list) else []
        groups = [decode(InferJob, {**plain, **item}).group() for item in requests]
        plain = {**plain, "groups": [encode(group) for group in groups]}
    return decode(BatchJob, plain)


def failure(message: str, status: int, **flags: bool) -> Reply:
    """The reply of a request that did not produce outputs."""
    return Reply(ok=False, error=message, status=status, **flags)


# msgspec's own encoders and decoders, measured in benchmarks/messages.py.
msgpack_encoder = msgspec.msgpack.Encoder()
json_encoder = msgspec.json.Encoder()


def msgpack_decoder(kind: type[T]) -> msgspec.msgpack.Decoder:
    """A msgpack decoder straight to kind."""
    return msgspec.msgpack.Decoder(kind)


def json_decoder(kind: type[T]) -> msgspec.json.Decoder:
    """A JSON decoder straight to kind."""
    return msgspec.json.Decoder(kind)
