"""Drive one cell with wrk and oip.lua, after a probe request and a warm-up."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bodies import BodySet, first_body, matches

LUA = Path(__file__).with_name("oip.lua")
RESULT_PREFIX = "BENCH_RESULT "
WRK_MISSING = (
    "wrk is not installed: `apt-get install -y wrk` (Debian/Ubuntu) or `brew install wrk`, "
    "then run again"
)


@dataclass(frozen=True)
class Target:
    """A system under test: its base URL, API key (or None) and a label for the table."""

    url: str
    key: str | None
    label: str
    metrics_url: str | None = None  # a farm worker's Prometheus endpoint, for batch sizes
    grpc: str | None = None  # host:port of the farm's gRPC endpoint, for the grpc lane


@dataclass(frozen=True)
class LoadOptions:
    """How wrk drives each cell."""

    duration: float = 10.0
    warmup: float = 2.0
    threads: int = 2
    timeout: float = 5.0
    rtol: float = 1e-4
    atol: float = 1e-5


def wrk_binary() -> str:
    """The path of wrk, or SystemExit saying how to install it."""
    found = shutil.which("wrk")
    if not found:
        raise SystemExit(WRK_MISSING)
    return found


def infer_path(model: str) -> str:
    """The OIP infer route of model."""
    return f"/v2/models/{model}/infer"


def headers(target: Target) -> dict[str, str]:
    """Request headers for target: JSON, and its bearer key if it has one."""
    found = {"Content-Type": "application/json"}
    if target.key:
        found["Authorization"] = f"Bearer {target.key}"
    return found


def probe(target: Target, model: str, bodies: BodySet, opts: LoadOptions, wait: float) -> None:
    """Send one request until it answers 200 (up to wait seconds) and check its answer."""
    body, expected = first_body(bodies)
    deadline = time.monotonic() + wait
    while True:
        try:
            answer = httpx.post(
                target.url + infer_path(model), json=body, headers=headers(target), timeout=30
            )
            if answer.status_code == 200:
                break
            reason = f"{answer.status_code} {answer.text[:300]}"
        except httpx.HTTPError as error:
            reason = repr(error)
        if time.monotonic() > deadline:
            raise RuntimeError(f"{target.label}: {model} never answered 200: {reason}")
        time.sleep(0.5)
    got = answer.json()["outputs"][0]["data"]
    if not matches(got, expected, opts.rtol, opts.atol):
        raise RuntimeError(f"{target.label}: {model} answered {got}, expected {expected}")


def wrk_command(
    target: Target,
    model: str,
    bodies: BodySet,
    connections: int,
    seconds: float,
    opts: LoadOptions,
    lane: str = "json",
) -> list[str]:
    """The wrk command line of one run; lane "binary" sends Triton's binary tensor form."""
    sent = bodies.binary if lane == "binary" else bodies.bodies
    return [
        wrk_binary(),
        "-t", str(max(1, min(opts.threads, connections))),
        "-c", str(connections),
        "-d", f"{max(1, round(seconds))}s",
        "--timeout", f"{opts.timeout:g}s",
        "-s", str(LUA),
        target.url + infer_path(model),
        "--",
        str(sent), str(bodies.expected), infer_path(model),
        target.key or "-", repr(opts.rtol), repr(opts.atol), lane,
    ]  # fmt: skip


def parse_result(stdout: str) -> dict[str, Any]:
    """The JSON that oip.lua printed after RESULT_PREFIX."""
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    raise RuntimeError(f"wrk printed no result line:\n{stdout[-2000:]}")


def run_wrk(
    target: Target,
    model: str,
    bodies: BodySet,
    connections: int,
    seconds: float,
    opts: LoadOptions,
    lane: str = "json",
) -> dict[str, Any]:
    """Run wrk once and return oip.lua's counts and latencies."""
    argv = wrk_command(target, model, bodies, connections, seconds, opts, lane)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_result(done.stdout)


BATCH_METRIC = "inference_farm_inference_batch_size"


def batch_totals(metrics_url: str | None, model: str) -> tuple[float, float] | None:
    """(sum, count) of the worker's batch-size histogram for model, or None if unreadable."""
    if not metrics_url:
        return None
    try:
        text = httpx.get(metrics_url, timeout=5).text
    except httpx.HTTPError:
        return None
    totals = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        for part in totals:
            if line.startswith(f"{BATCH_METRIC}_{part}{{") and f'model="{model}"' in line:
                totals[part] += float(line.rsplit(" ", 1)[1])
    return totals["sum"], totals["count"]


def mean_batch(before: tuple | None, after: tuple | None) -> float | None:
    """The mean batch size a request ran in between two readings of batch_totals."""
    if before is None or after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1])


def run_cell(
    target: Target,
    model: str,
    bodies: BodySet,
    connections: int,
    opts: LoadOptions,
    lane: str = "json",
) -> dict[str, Any]:
    """Warm up, then measure one cell; the result also names the cell's settings."""
    if lane == "grpc":
        from benchmarks import grpc_load  # grpcio is needed for this lane only

        if opts.warmup > 0:
            grpc_load.run(target, model, bodies, connections, opts.warmup, opts)
    elif opts.warmup > 0:
        run_wrk(target, model, bodies, connections, opts.warmup, opts, lane)
    before = batch_totals(target.metrics_url, model)
    if lane == "grpc":
        result = grpc_load.run(target, model, bodies, connections, opts.duration, opts)
    else:
        result = run_wrk(target, model, bodies, connections, opts.duration, opts, lane)
    batch = mean_batch(before, batch_totals(target.metrics_url, model))
    result.update(model=model, connections=connections, lane=lane, mean_batch_size=batch)
    return result
