"""The typed API-worker messages: plain forms round-trip, bad ones are refused clearly, and
the message version tells adjacent releases apart."""

from __future__ import annotations

import msgpack
import numpy as np
import orjson
import pytest

from inference_farm.errors import InvalidInput
from inference_farm.protocol import messages
from inference_farm.protocol.messages import (
    BatchJob,
    BatchReply,
    Group,
    InferJob,
    Reply,
    ReplyMessage,
    RequestMeta,
)
from inference_farm.protocol.packing import pack, unpack

X = np.arange(8, dtype=np.float32).reshape(2, 4)


def test_a_coalesced_job_survives_msgpack_with_raw_tensor_bytes() -> None:
    group = Group(inputs={"x": pack(X, "FP32", raw=True)}, requests=[RequestMeta(deadline=5.0)],
                  rows=[2])  # fmt: skip
    job = BatchJob("m", "1.0.0", [group], "farm:replies:a")
    wire = msgpack.unpackb(msgpack.packb(messages.encode(job), use_bin_type=True))
    back = messages.decode_batch(wire)
    assert (back.model, back.version, back.reply_to, back.v) == ("m", "1.0.0", "farm:replies:a", 1)
    np.testing.assert_array_equal(unpack(back.groups[0].inputs["x"]), X)
    assert back.groups[0].requests[0].deadline == 5.0


def test_a_reply_message_survives_json() -> None:
    reply = Reply(ok=True, model_version="1.0.0", outputs={"y": pack(X, "FP32")}, batch_size=2)
    message = ReplyMessage("t-1", BatchReply(ok=True, replies=[reply, messages.failure("no", 400)]))
    back = messages.decode(ReplyMessage, orjson.loads(orjson.dumps(messages.encode(message))))
    good, bad = back.reply.replies
    assert (good.ok, good.batch_size, bad.ok, bad.status, bad.error) == (True, 2, False, 400, "no")
    np.testing.assert_array_equal(unpack(good.outputs["y"]), X)


def test_the_plain_form_leaves_out_what_is_unset() -> None:
    assert messages.encode(messages.failure("late", 504, expired=True)) == {
        "ok": False, "error": "late", "status": 504, "expired": True,
    }  # fmt: skip


@pytest.mark.parametrize(
    "plain, says",
    [
        ("not a job", "malformed InferJob"),
        ({"model": "m", "inputs": {}}, "missing required field `version`"),
        ({"model": "m", "version": "1.0.0", "inputs": [1]}, r"\$.inputs"),
        ({"model": "m", "version": "1.0.0", "inputs": {}, "deadline": "soon"}, r"\$.deadline"),
    ],
)
def test_a_malformed_message_is_refused_naming_the_field(plain: object, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        messages.decode(InferJob, plain)


def test_a_newer_message_version_says_to_upgrade() -> None:
    plain = {"model": "m", "version": "1.0.0", "inputs": {}, "v": messages.VERSION + 1}
    with pytest.raises(InvalidInput, match=r"newer than this release reads .* upgrade"):
        messages.decode(InferJob, plain)


def test_fields_a_newer_sender_adds_are_ignored() -> None:
    plain = {"model": "m", "version": "1.0.0", "inputs": {}, "someday": True}
    assert messages.decode(InferJob, plain).model == "m"


def test_a_coalesced_job_of_the_release_before_groups_is_read() -> None:
    # Before groups, a coalesced job listed its requests, each with its own inputs.
    request = {"inputs": {"x": pack(X, "FP32")}, "outputs": None, "deadline": 9.0}
    job = messages.decode_batch({"model": "m", "version": "1.0.0", "requests": [request] * 2})
    assert [len(group.requests) for group in job.groups] == [1, 1]
    assert job.groups[1].requests[0].deadline == 9.0 and job.groups[0].rows is None
