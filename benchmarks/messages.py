"""CPU cost of typing the API-worker messages: plain dicts, or msgspec Structs.

.venv/bin/python -m benchmarks.messages [--requests 32] [--repeat 2000]

One coalesced job of N tiny or heavy requests, and its reply, as each side handles them:
the API builds the job and msgpack-encodes it (kombu's msgpack body), the worker decodes
it and reads every field it uses; the worker builds the reply and JSON-encodes it, the API
decodes it and reads it. Three ways: `dicts` (the farm before typed messages), `structs`
(msgspec Structs, converted from and to the dicts that kombu and redis-py hand over), and
`native` (msgspec encoding and decoding the Structs itself, for reference). Prints
microseconds per job for each side.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import msgpack
import numpy as np
import orjson

from inference_farm.protocol import messages
from inference_farm.protocol.packing import pack

WIDTHS = {"tiny": 64, "heavy": 1024}


def _tensor(width: int, rows: int, raw: bool = True) -> dict:
    return pack(np.ones((rows, width), np.float32), "FP32", raw=raw)


def _job_dict(count: int, tensor: dict) -> dict:
    requests = [{"deadline": 1e9, "request_id": "r" * 16, "enqueued_at": 1.0}] * count
    group = {"inputs": {"x": tensor}, "outputs": None, "rows": [1] * count,
             "requests": requests}  # fmt: skip
    return {"model": "tiny", "version": "1.0.0", "groups": [group], "reply_to": "farm:replies:a"}


def _job_struct(count: int, tensor: dict) -> messages.BatchJob:
    meta = [messages.RequestMeta(1e9, "r" * 16, 1.0)] * count
    group = messages.Group(inputs={"x": tensor}, requests=meta, rows=[1] * count)
    return messages.BatchJob("tiny", "1.0.0", [group], "farm:replies:a")


def _reply_dict(count: int) -> dict:
    one = {"ok": True, "model_version": "1.0.0", "outputs": {"y": _tensor(10, 1, raw=False)},
           "decode_ms": 0.1, "compute_ms": 0.2, "encode_ms": 0.01, "batch_size": count}  # fmt: skip
    return {"task_id": "t" * 36, "reply": {"ok": True, "replies": [one] * count}}


def _read_job(job: Any) -> int:
    """What the worker reads of a job, from a dict or a Struct."""
    if isinstance(job, dict):
        return sum(len(g["requests"]) + len(g["inputs"]) for g in job["groups"])
    return sum(len(g.requests) + len(g.inputs) for g in job.groups)


def _read_reply(message: Any) -> int:
    if isinstance(message, dict):
        return sum(len(r["outputs"]) for r in message["reply"]["replies"])
    return sum(len(r.outputs or {}) for r in message.reply.replies)


def _ways(count: int, width: int) -> dict[str, tuple[Callable, Callable, Callable, Callable]]:
    tensor = _tensor(width, count)  # packed once: both ways carry the same bytes
    reply = _reply_dict(count)
    typed_reply = messages.decode(messages.ReplyMessage, reply)

    def dict_api_send() -> bytes:
        return msgpack.packb(_job_dict(count, tensor), use_bin_type=True)

    def struct_api_send() -> bytes:
        return msgpack.packb(messages.encode(_job_struct(count, tensor)), use_bin_type=True)

    def native_api_send() -> bytes:
        return messages.msgpack_encoder.encode(_job_struct(count, tensor))

    wire_job = dict_api_send()
    wire_reply = orjson.dumps(reply)
    return {
        "dicts": (
            dict_api_send,
            lambda: _read_job(msgpack.unpackb(wire_job, raw=False)),
            lambda: orjson.dumps(reply),
            lambda: _read_reply(orjson.loads(wire_reply)),
        ),
        "structs": (
            struct_api_send,
            lambda: _read_job(messages.decode(messages.BatchJob, msgpack.unpackb(wire_job))),
            lambda: orjson.dumps(messages.encode(typed_reply)),
            lambda: _read_reply(messages.decode(messages.ReplyMessage, orjson.loads(wire_reply))),
        ),
        "native": (
            native_api_send,
            lambda: _read_job(messages.msgpack_decoder(messages.BatchJob).decode(wire_job)),
            lambda: messages.json_encoder.encode(typed_reply),
            lambda: _read_reply(messages.json_decoder(messages.ReplyMessage).decode(wire_reply)),
        ),
    }


def _us(work: Callable[[], Any], repeat: int) -> float:
    for _ in range(repeat // 10):
        work()
    started = time.perf_counter()
    for _ in range(repeat):
        work()
    return (time.perf_counter() - started) / repeat * 1e6


def main(argv: list[str] | None = None) -> None:
    """Print the cost of each way, per job, on each side."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args(argv)
    print("| model | way | API builds job | worker reads job | worker builds reply | "
          "API reads reply | total µs |")  # fmt: skip
    print("| --- | --- | --: | --: | --: | --: | --: |")
    for model, width in WIDTHS.items():
        for way, steps in _ways(args.requests, width).items():
            costs = [_us(step, args.repeat) for step in steps]
            cells = " | ".join(f"{cost:.1f}" for cost in costs)
            print(f"| {model} | {way} | {cells} | {sum(costs):.1f} |")


if __name__ == "__main__":
    main()
