"""CPU cost of one coalesced job's message, encoded in the API and decoded in the worker.

.venv/bin/python -m benchmarks.serialization [--requests 16] [--repeat 300]

Compares the farm's format (JSON, tensors base64 inside it, the body base64 again in
kombu's Redis envelope) with msgpack bodies carrying raw tensor bytes (still base64 in the
envelope: kombu's Redis transport always writes JSON), for the tiny and heavy inputs. Each
side does what it does per job: the API builds the message; the worker parses the envelope,
decodes the body, re-serializes the message for kombu's unacked hash (QoS), and turns the
tensor back into an array. Prints microseconds per job for each side.
"""

from __future__ import annotations

import argparse
import base64
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

WIDTHS = {"tiny": 64, "heavy": 1024}


def _envelope(body: bytes, content_type: str) -> bytes:
    return orjson.dumps(
        {
            "body": base64.b64encode(body).decode("ascii"),
            "content-type": content_type,
            "headers": {"task": "farm.infer_batch", "id": "x" * 36},
            "properties": {"body_encoding": "base64", "priority": 0},
        }
    )


def _worker_side(raw: bytes, loads: Callable[[bytes], Any]) -> Any:
    message = json.loads(raw)  # kombu's Redis transport
    body = loads(base64.b64decode(message["body"]))
    json.dumps([message, "", "farm.model.m"])  # QoS.append keeps a copy for redelivery
    return body


def json_format(x: np.ndarray) -> tuple[Callable[[], bytes], Callable[[bytes], Any]]:
    """The farm's format: base64 tensors inside a JSON body."""

    def encode() -> bytes:
        tensor = {"datatype": "FP32", "shape": list(x.shape), "b64": base64.b64encode(x.tobytes())}
        group = {"inputs": {"x": {**tensor, "b64": tensor["b64"].decode("ascii")}}}
        return _envelope(orjson.dumps([[{"groups": [group]}], {}, {}]), "application/json")

    def decode(raw: bytes) -> np.ndarray:
        body = _worker_side(raw, json.loads)
        packed = body[0][0]["groups"][0]["inputs"]["x"]
        return np.frombuffer(base64.b64decode(packed["b64"]), np.float32).reshape(packed["shape"])

    return encode, decode


def msgpack_format(x: np.ndarray) -> tuple[Callable[[], bytes], Callable[[bytes], Any]] | None:
    """msgpack bodies with the tensor as raw bytes; None when msgpack is not installed."""
    try:
        import msgpack
    except ImportError:
        return None

    def encode() -> bytes:
        group = {"inputs": {"x": {"datatype": "FP32", "shape": list(x.shape), "raw": x.tobytes()}}}
        body = msgpack.packb([[{"groups": [group]}], {}, {}])
        return _envelope(body, "application/x-msgpack")

    def decode(raw: bytes) -> np.ndarray:
        body = _worker_side(raw, msgpack.unpackb)
        packed = body[0][0]["groups"][0]["inputs"]["x"]
        return np.frombuffer(packed["raw"], np.float32).reshape(packed["shape"])

    return encode, decode


def _time(work: Callable[[], Any], repeat: int) -> float:
    work()
    started = time.perf_counter()
    for _ in range(repeat):
        work()
    return (time.perf_counter() - started) / repeat * 1e6


def measure(requests: int, repeat: int) -> list[dict[str, Any]]:
    """Microseconds per job on each side, and the message size, per model and format."""
    rows = []
    for model, width in WIDTHS.items():
        x = np.random.default_rng(0).standard_normal((requests, width)).astype(np.float32)
        for name, make in (("json + base64", json_format), ("msgpack, raw tensor", msgpack_format)):
            pair = make(x)
            if pair is None:
                continue
            encode, decode = pair
            message = encode()
            assert np.array_equal(decode(message), x)
            rows.append(
                {
                    "model": model,
                    "format": name,
                    "bytes": len(message),
                    "api_us": _time(encode, repeat),
                    "worker_us": _time(lambda d=decode, m=message: d(m), repeat),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=16, help="requests in the job")
    parser.add_argument("--repeat", type=int, default=300, help="timed runs of each")
    args = parser.parse_args(argv)
    print(f"one job of {args.requests} requests; microseconds per job")
    print("| model | format | message bytes | API encode | worker decode |")
    print("| --- | --- | --: | --: | --: |")
    for row in measure(args.requests, args.repeat):
        print(
            f"| {row['model']} | {row['format']} | {row['bytes']:,} | "
            f"{row['api_us']:.0f} | {row['worker_us']:.0f} |"
        )


if __name__ == "__main__":
    main()
