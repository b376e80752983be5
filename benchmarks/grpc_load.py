"""The gRPC load generator: ModelInfer with raw_input_contents over grpc.aio, its own process.

python -m benchmarks.grpc_load ADDRESS MODEL BODIES EXPECTED [--connections 32] [--channels 4]
    [--duration 10] [--key KEY] [--timeout 5] [--rtol 1e-4] [--atol 1e-5]

Sends the JSON bodies' rows as raw little-endian FP32 bytes, keeping --connections calls in
flight over --channels channels (each its own TCP connection), and checks each answer's id and
raw output against EXPECTED as oip.lua does. Prints one line, "BENCH_RESULT {json}", with
oip.lua's keys (non_200 counts answers whose status is not OK) plus the generator's own CPU.
Latencies are each call's own: unlike wrk's, they are not corrected for coordinated omission.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bodies import BodySet
from benchmarks.load import RESULT_PREFIX, LoadOptions, Target, parse_result

# Timeouts and refused connections count as wrk counts its timeouts and socket errors.
TIMEOUT_CODES = ("DEADLINE_EXCEEDED",)
SOCKET_CODES = ("UNAVAILABLE",)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The generator's command line."""
    parser = argparse.ArgumentParser(
        prog="benchmarks.grpc_load", description=__doc__.split("\n")[0]
    )
    add = parser.add_argument
    add("address", help="host:port of the gRPC endpoint")
    add("model")
    add("bodies", type=Path, help="one OIP JSON request a line (benchmarks/bodies.py)")
    add("expected", type=Path, help="the expected output numbers, a line per body")
    add("--connections", type=int, default=32, help="calls in flight at once")
    add("--channels", type=int, default=4, help="gRPC channels (at most the connections)")
    add("--duration", type=float, default=10.0, help="seconds measured")
    add("--key", help="API key, sent as authorization metadata")
    add("--timeout", type=float, default=5.0, help="deadline of each call in seconds")
    add("--rtol", type=float, default=1e-4)
    add("--atol", type=float, default=1e-5)
    args = parser.parse_args(argv)
    if args.connections < 1 or args.channels < 1 or args.duration <= 0:
        parser.error("--connections and --channels must be at least 1, --duration above 0")
    args.channels = min(args.channels, args.connections)
    return args


def requests_from(bodies: Path, model: str) -> list[Any]:
    """Each JSON body as a ModelInferRequest carrying its input as raw_input_contents."""
    from inference_farm.protocol.grpc import inference_pb2 as pb

    found = []
    for line in bodies.read_text().splitlines():
        body = json.loads(line)
        message = pb.ModelInferRequest(model_name=model, id=body["id"])
        for entry in body["inputs"]:
            message.inputs.add(name=entry["name"], datatype="FP32", shape=entry["shape"])
            message.raw_input_contents.append(np.asarray(entry["data"], "<f4").tobytes())
        found.append(message)
    return found


def expected_from(path: Path) -> list[np.ndarray]:
    """The expected output of body i, as float32, at index i."""
    lines = path.read_text().splitlines()
    return [np.array(line.split(), np.float32) for line in lines]


@dataclass
class Tally:
    """Counts and latencies of the answers of one run."""

    correct: int = 0
    wrong: int = 0
    non_200: int = 0
    socket_errors: int = 0
    timeouts: int = 0
    first_error: str = ""
    latencies: list[float] = field(default_factory=list)

    def error(self, text: str) -> None:
        """Keep the first error's text."""
        self.first_error = self.first_error or text[:200]


def check(reply: Any, want_id: str, want: np.ndarray, rtol: float, atol: float) -> bool:
    """Whether reply echoes want_id and its first raw output equals want within tolerance."""
    if reply.id != want_id or not reply.raw_output_contents:
        return False
    got = np.frombuffer(reply.raw_output_contents[0], "<f4")
    return got.shape == want.shape and bool(
        np.all(np.abs(got - want) <= atol + rtol * np.abs(want))
    )


def note_failure(tally: Tally, error: Any) -> None:
    """Count a failed call by its status code."""
    code = error.code().name
    if code in TIMEOUT_CODES:
        tally.timeouts += 1
    elif code in SOCKET_CODES:
        tally.socket_errors += 1
    else:
        tally.non_200 += 1
    tally.error(f"{code} {error.details()}")


async def caller(stub: Any, work: dict[str, Any], start: int, tally: Tally) -> None:
    """Send the requests in turn from index start, one at a time, until the deadline."""
    import grpc

    requests, expected, args = work["requests"], work["expected"], work["args"]
    index = start
    while time.monotonic() < work["deadline"]:
        index = (index + 1) % len(requests)
        sent = time.perf_counter()
        try:
            reply = await stub.ModelInfer(
                requests[index], metadata=work["metadata"], timeout=args.timeout
            )
        except grpc.aio.AioRpcError as error:
            note_failure(tally, error)
            continue
        tally.latencies.append(time.perf_counter() - sent)
        if check(reply, requests[index].id, expected[index], args.rtol, args.atol):
            tally.correct += 1
        else:
            tally.wrong += 1
            tally.error(f"OK {str(reply)[:180]}")


def summary(tally: Tally, seconds: float, cpu_s: float) -> dict[str, Any]:
    """The result line's fields, as oip.lua names them."""
    ms = np.array(tally.latencies) * 1000 if tally.latencies else np.zeros(1)
    return {
        "duration_s": round(seconds, 3),
        "responses": len(tally.latencies) + tally.non_200,
        "correct": tally.correct,
        "wrong": tally.wrong,
        "non_200": tally.non_200,
        "socket_errors": tally.socket_errors,
        "timeouts": tally.timeouts,
        "correct_per_s": round(tally.correct / seconds, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "max_ms": round(float(ms.max()), 3),
        "first_error": tally.first_error,
        "client_cpu_s": round(cpu_s, 3),
    }


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def drive(args: argparse.Namespace) -> dict[str, Any]:
    """Open the channels, send one uncounted call on each, then measure for args.duration."""
    import grpc

    from inference_farm.protocol.grpc import inference_pb2_grpc as pb_grpc

    # A local subchannel pool per channel: otherwise channels to one address share one socket.
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(args.address, options) for _ in range(args.channels)]
    stubs = [pb_grpc.GRPCInferenceServiceStub(channel) for channel in channels]
    metadata = (("authorization", f"Bearer {args.key}"),) if args.key else ()
    work = {"requests": requests_from(args.bodies, args.model), "args": args,
            "expected": expected_from(args.expected), "metadata": metadata}  # fmt: skip
    try:
        for stub in stubs:
            await stub.ModelInfer(work["requests"][0], metadata=metadata, timeout=30)
        tally, started, cpu = Tally(), time.monotonic(), _cpu()
        work["deadline"] = started + args.duration
        await asyncio.gather(
            *(caller(stubs[i % len(stubs)], work, i * 7, tally) for i in range(args.connections))
        )
        return summary(tally, time.monotonic() - started, _cpu() - cpu)
    finally:
        await asyncio.gather(*(channel.close() for channel in channels))


def command(
    target: Target, model: str, bodies: BodySet, connections: int, seconds: float, opts: LoadOptions
) -> list[str]:
    """The generator's command line for one run against target's gRPC address."""
    if not target.grpc:
        raise RuntimeError(
            f"{target.label} has no gRPC address (grpc_port 0, or --url without --grpc)"
        )
    argv = [sys.executable, "-m", "benchmarks.grpc_load", target.grpc, model,
            str(bodies.bodies), str(bodies.expected), "--connections", str(connections),
            "--channels", str(max(1, min(opts.threads * 2, connections))),
            "--duration", f"{seconds:g}", "--timeout", f"{opts.timeout:g}",
            "--rtol", repr(opts.rtol), "--atol", repr(opts.atol)]  # fmt: skip
    return argv + (["--key", target.key] if target.key else [])


def run(
    target: Target, model: str, bodies: BodySet, connections: int, seconds: float, opts: LoadOptions
) -> dict[str, Any]:
    """Run the generator once, as a process of its own, and return its result line."""
    argv = command(target, model, bodies, connections, seconds, opts)
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=seconds + 90, check=False, cwd=root
    )
    if done.returncode != 0:
        raise RuntimeError(f"grpc_load failed ({done.returncode}): {done.stderr[-2000:]}")
    return parse_result(done.stdout)


def main(argv: list[str] | None = None) -> int:
    """Run one measurement and print its result line."""
    result = asyncio.run(drive(parse_args(argv)))
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
