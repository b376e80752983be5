"""Run the benchmark: every system, every cell; write results.md and results.json.

.venv/bin/python -m benchmarks.run [--duration 10] [--systems farm,noqueue,...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shlex
import sys
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import farm, inprocess, peers
from benchmarks.bodies import BodySet, write_bodies
from benchmarks.load import LoadOptions, Target, probe, run_cell, run_wrk, wrk_binary
from benchmarks.models import write_models
from benchmarks.results import CELLS, merge_rounds, write

HERE = Path(__file__).resolve().parent
SYSTEMS = ["inprocess", "noqueue", "ray-direct", "ray-proxy", "farm"]
BATCHES = (1, 32)
WARM_CONNECTIONS = 32
# The farm's lanes: (table label suffix, how requests travel). Peers serve the JSON lane only.
LANES = {
    "json": ("", "REST, JSON"),
    "binary": (", REST binary", "REST, Triton's binary tensor extension"),
    "grpc": (", gRPC", "gRPC ModelInfer, raw_input_contents"),
}


def _names(text: str, known: list[str], what: str) -> list[str]:
    chosen = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        raise SystemExit(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(known)}")
    return chosen


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; every farm setting can also come from INFERENCE_FARM_* variables."""
    parser = argparse.ArgumentParser(prog="benchmarks.run", description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--systems", default=",".join(SYSTEMS), help="comma-separated, from: " + ", ".join(SYSTEMS))
    add("--cells", default=",".join(CELLS), help="comma-separated, from: " + ", ".join(CELLS))
    add("--duration", type=float, default=10.0, help="seconds measured per cell")
    add("--rounds", type=int, default=1,
        help="run every system this many times, every other round in reverse order; "
        "the table shows medians")  # fmt: skip
    add("--warmup", type=float, default=2.0, help="seconds of load before each cell, not counted")
    add("--wrk-threads", type=int, default=2, help="wrk threads (at most the connections)")
    add("--wrk-timeout", type=float, default=5.0, help="seconds before wrk gives up on an answer")
    add("--rtol", type=float, default=1e-4, help="relative tolerance of a correct answer")
    add("--atol", type=float, default=1e-5, help="absolute tolerance of a correct answer")
    add("--bodies", type=int, default=64, help="distinct request bodies per model")
    add("--lanes", default=",".join(LANES), help="the farm's lanes, from: " + ", ".join(LANES))
    add("--url", help="benchmark the farm already running at this URL instead of starting one")
    add("--grpc", help="host:port of the gRPC endpoint of the farm at --url")
    add("--key", help="API key for --url (needs models:read, models:write and infer)")
    add("--set", dest="settings", action="append", default=[], metavar="NAME=VALUE",
        help="a setting of the private farm, e.g. worker_concurrency=4 (repeatable)")  # fmt: skip
    add("--farm-workers", type=int, default=1, help="`inference-farm worker` processes")
    add("--worker-args", default="--all-models", help="arguments of each farm worker")
    add("--noqueue-workers", type=int, default=2, help="gunicorn sync workers of the baseline")
    add("--noqueue-intra-op-threads", type=int, default=1, help="onnxruntime threads per worker")
    add("--ray-max-batch", type=int, default=32, help="@serve.batch max_batch_size")
    add("--ray-wait-ms", type=float, default=2.0, help="@serve.batch batch_wait_timeout_s in ms")
    add("--ray-intra-op-threads", type=int, default=0, help="onnxruntime threads; 0: it decides")
    add("--work-dir", type=Path, default=HERE / ".work", help="models, bodies and service logs")
    add("--out", type=Path, default=HERE / "results.md", help="markdown table")
    add("--json", type=Path, default=HERE / "results.json", help="raw numbers")
    args = parser.parse_args(argv)
    args.systems = _names(args.systems, SYSTEMS, "system")
    args.cells = _names(args.cells, list(CELLS), "cell")
    args.lanes = _names(args.lanes, list(LANES), "lane")
    return args


def measure(
    target: Target, data: dict[str, BodySet], args: argparse.Namespace, lane: str = "json"
) -> dict:
    """Probe each model the cells use, then run the cells against target on lane."""
    opts = LoadOptions(
        args.duration, args.warmup, args.wrk_threads, args.wrk_timeout, args.rtol, args.atol
    )
    for model in sorted({CELLS[cell][0] for cell in args.cells}):
        probe(target, model, data[model], opts, wait=60.0)
        # Many connections reach every server process, so that no cell pays a cold start.
        if opts.warmup > 0 and lane != "grpc":  # each grpc run warms its own channels
            run_wrk(target, model, data[model], WARM_CONNECTIONS, opts.warmup, opts, lane)
    cells = {}
    for cell in args.cells:
        model, connections = CELLS[cell]
        cells[cell] = run_cell(target, model, data[model], connections, opts, lane)
        print(f"  {cell}: {_summary(cells[cell])}", flush=True)
    return cells


def _summary(cell: dict[str, Any]) -> str:
    return (
        f"{cell['correct_per_s']:,.0f} correct/s, p50 {cell['p50_ms']:.2f} ms, "
        f"p99 {cell['p99_ms']:.2f} ms, {cell['correct']} correct, {cell['wrong']} wrong, "
        f"{cell['non_200']} non-200, {cell['socket_errors'] + cell['timeouts']} socket errors"
        + (f"; first error: {cell['first_error'][:160]}" if cell["first_error"] else "")
    )


def _farm(args: argparse.Namespace, models: dict[str, Path]) -> AbstractContextManager[Target]:
    if args.url:
        label = f"{farm.LABEL} at {args.url}"
        return nullcontext(Target(args.url.rstrip("/"), args.key, label, grpc=args.grpc))
    opts = farm.FarmOptions(
        settings=farm.parse_settings(args.settings),
        workers=args.farm_workers,
        worker_args=shlex.split(args.worker_args),
    )
    return farm.private_farm(opts, args.work_dir)


def _peer_opts(args: argparse.Namespace) -> peers.PeerOptions:
    return peers.PeerOptions(
        args.noqueue_workers,
        args.noqueue_intra_op_threads,
        args.ray_max_batch,
        args.ray_wait_ms,
        args.ray_intra_op_threads,
    )


def _system(name: str, args: argparse.Namespace, models: dict[str, Path]) -> Any:
    """A context manager running the system called name, or a string saying why it is skipped."""
    models_dir = args.work_dir / "models"
    if name == "noqueue":
        return peers.noqueue(models_dir, args.work_dir, _peer_opts(args))
    if name == "farm":
        return _farm(args, models)
    python = peers.ensure_ray(args.work_dir / "logs" / "ray-install.log")
    if python is None:
        return "ray[serve] could not be installed; see logs/ray-install.log"
    ingress = name.removeprefix("ray-")
    return peers.ray_serve(python, ingress, models_dir, args.work_dir, _peer_opts(args))


def _failed(entry: dict[str, Any], error: Exception) -> None:
    traceback.print_exc()
    entry.update(status="failed", reason=str(error).splitlines()[0][:200])


def _farm_lanes(
    target: Target, args: argparse.Namespace, models: dict[str, Path], data: dict[str, BodySet]
) -> list[dict[str, Any]]:
    """The farm's entries, one per lane, each measured in turn on the one farm."""
    common = {"versions": _versions(farm.prepare(target, models)), "settings": _farm_settings(args)}
    entries = []
    for lane in args.lanes:
        suffix, how = LANES[lane]
        system = "farm" if lane == "json" else f"farm-{lane}"
        entry = {"system": system, "label": target.label + suffix, "lane": lane, "how": how,
                 "status": "ok", "cells": {}, **common}  # fmt: skip
        print(f"farm: lane {lane}", flush=True)
        try:
            entry["cells"] = measure(target, data, args, lane)
        except Exception as error:  # one lane failing must not lose the others' numbers
            _failed(entry, error)
        entries.append(entry)
    return entries


def run_system(
    name: str, args: argparse.Namespace, models: dict[str, Path], data: dict[str, BodySet]
) -> list[dict[str, Any]]:
    """Start the system called name, measure it, stop it; its entries (the farm: a lane each)."""
    print(f"{name}: starting", flush=True)
    entry: dict[str, Any] = {"system": name, "label": name, "status": "ok", "cells": {}}
    try:
        system = _system(name, args, models)
        if isinstance(system, str):
            entry.update(status="skipped", reason=system)
            return [entry]
        with system as target:
            entry["label"] = target.label
            if name == "farm":
                return _farm_lanes(target, args, models, data)
            entry["cells"] = measure(target, data, args)
    except Exception as error:  # one system failing must not lose the others' numbers
        _failed(entry, error)
    return [entry]


def _versions(records: dict[str, Any]) -> dict[str, Any]:
    return {name: {"version": r["version"], "sha256": r["sha256"]} for name, r in records.items()}


def _farm_settings(args: argparse.Namespace) -> dict[str, str]:
    """The farm settings this run chose (runner defaults, environment, --set); no secrets."""
    settings = dict(farm.DEFAULT_SETTINGS)
    for name, value in os.environ.items():
        if name.startswith("INFERENCE_FARM_"):
            settings[name.removeprefix("INFERENCE_FARM_")] = value
    settings.update(farm.parse_settings(args.settings))
    secret = ("URL", "KEY", "AUTH", "BACKEND")
    return {k: "(set)" if any(s in k for s in secret) else v for k, v in settings.items()}


def _inprocess(models: dict[str, Path], seconds: float) -> dict[str, float]:
    print("inprocess: heavy at batch " + " and ".join(map(str, BATCHES)), flush=True)
    return {str(b): inprocess.samples_per_second(models["heavy"], b, seconds) for b in BATCHES}


def main(argv: list[str] | None = None, on_table: Callable[[str], Any] = print) -> int:
    """Run the selected systems and cells; write and print the table; 1 if a system failed."""
    args = parse_args(argv)
    if set(args.systems) - {"inprocess"}:
        wrk_binary()
    args.work_dir = args.work_dir.resolve()
    models = write_models(args.work_dir / "models")
    data = {
        name: write_bodies(path, args.work_dir / "data", args.bodies)
        for name, path in models.items()
    }
    results: dict[str, Any] = {"run": _run_info(args, argv), "systems": []}
    if "inprocess" in args.systems:
        results["inprocess"] = _inprocess(models, args.duration)
    served = [name for name in args.systems if name != "inprocess"]
    entries: dict[str, list[dict[str, Any]]] = {}  # by row: the farm has one per lane
    # Every other round runs the systems in reverse, so a machine that speeds up or slows
    # down during the run does not favour whichever system comes first.
    for index in range(max(1, args.rounds)):
        for name in served if index % 2 == 0 else served[::-1]:
            for entry in run_system(name, args, models, data):
                entries.setdefault(entry["system"], []).append(entry)
    order = [*served, *(f"farm-{lane}" for lane in LANES)]
    results["systems"] = [merge_rounds(entries[name]) for name in order if name in entries]
    on_table(write(results, args.out, args.json))
    return int(any(system["status"] == "failed" for system in results["systems"]))


def _command(argv: list[str]) -> str:
    previous = ["", *argv][: len(argv)]
    shown = ["(key)" if p == "--key" else word for p, word in zip(previous, argv, strict=True)]
    return " ".join(["python -m benchmarks.run", shlex.join(shown)]).rstrip()


def _run_info(args: argparse.Namespace, argv: list[str] | None) -> dict[str, Any]:
    return {
        "date": dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "command": _command(sys.argv[1:] if argv is None else argv),
        "duration_s": args.duration,
        "rounds": max(1, args.rounds),
        "warmup_s": args.warmup,
        "wrk_threads": args.wrk_threads,
        "cells": args.cells,
        "lanes": args.lanes,
    }


if __name__ == "__main__":
    sys.exit(main())
