"""What open consoles cost sync inference: wrk on tiny at c=32, alone and beside N viewers
of /v1/events, in alternating rounds on one private farm.

python -m benchmarks.consoles [--viewers 10] [--rounds 4] [--duration 10] [--connections 32]
    [--interval 2.0] [--out benchmarks/consoles.md]

Each viewer is what the console's Overview page holds open: one authenticated stream of
GET /v1/events, read to the end of each event. The viewers run in a process of their own,
as browsers would run on other machines; here they share the machine's cores with the farm,
so the figure is an upper bound. Rounds alternate (alone, with viewers, with, alone, ...)
so that a drifting machine favours neither. Prints and writes the table, and the events
each viewer received (proof that they were live).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.bodies import write_bodies
from benchmarks.farm import FarmOptions, prepare, private_farm
from benchmarks.load import LoadOptions, run_cell
from benchmarks.models import write_models

WORK = Path("benchmarks/.work")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The benchmark's command line."""
    parser = argparse.ArgumentParser(prog="benchmarks.consoles", description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--viewers", type=int, default=10)
    add("--rounds", type=int, default=4, help="pairs of cells: alone and with viewers")
    add("--duration", type=float, default=10.0)
    add("--connections", type=int, default=32)
    add("--interval", type=float, default=2.0, help="events_interval of the farm")
    add("--out", type=Path, default=Path("benchmarks/consoles.md"))
    return parser.parse_args(argv)


def _viewers(url: str, key: str, viewers: int, seconds: float) -> subprocess.Popen:
    """The viewers' process, once every stream is open."""
    argv = [sys.executable, "-m", "benchmarks.viewers", url, key, str(viewers), str(seconds)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    if process.stdout is None or process.stdout.readline().strip() != "ready":
        raise RuntimeError("the viewers did not get their streams")
    return process


def _cell(target: Any, data: Any, args: argparse.Namespace, viewers: int) -> dict[str, Any]:
    opts = LoadOptions(duration=args.duration, warmup=2.0)
    watcher = None
    if viewers:
        watcher = _viewers(target.url, target.key, viewers, args.duration + 4)
    result = run_cell(target, "tiny", data, args.connections, opts)
    if watcher is not None:
        out, _ = watcher.communicate(timeout=args.duration + 60)
        result["events"] = json.loads(out.strip().splitlines()[-1])
    result["viewers"] = viewers
    return result


def main(argv: list[str] | None = None) -> int:
    """Measure, print and write the table."""
    args = parse_args(argv)
    models = write_models(WORK / "models", ("tiny",))
    data = write_bodies(models["tiny"], WORK / "data")
    opts = FarmOptions(settings={"EVENTS_INTERVAL": str(args.interval), "GRPC_PORT": "0"})
    cells: list[dict[str, Any]] = []
    with private_farm(opts, WORK) as target:
        prepare(target, models)
        for index in range(args.rounds):
            order = (0, args.viewers) if index % 2 == 0 else (args.viewers, 0)
            cells += [_cell(target, data, args, viewers) for viewers in order]
    table = _table(cells, args)
    args.out.write_text(table)
    args.out.with_suffix(".json").write_text(json.dumps(cells, indent=1))
    print(table)
    return 0


def _table(cells: list[dict[str, Any]], args: argparse.Namespace) -> str:
    alone = [c["correct_per_s"] for c in cells if not c["viewers"]]
    watched = [c["correct_per_s"] for c in cells if c["viewers"]]
    cost = 1 - statistics.median(watched) / statistics.median(alone)
    events = [c["events"] for c in cells if c["viewers"]]
    lines = [
        f"# Open consoles against sync infer ({time.strftime('%Y-%m-%d')})",
        "",
        f"`python -m benchmarks.consoles --viewers {args.viewers} --rounds {args.rounds} "
        f"--duration {args.duration:g} --connections {args.connections} "
        f"--interval {args.interval:g}`",
        "",
        "| cell | req/s by round | median req/s |",
        "| --- | --- | --: |",
        f"| tiny c={args.connections}, no viewer | {', '.join(f'{v:,.0f}' for v in alone)} | "
        f"{statistics.median(alone):,.0f} |",
        f"| tiny c={args.connections}, {args.viewers} viewers | "
        f"{', '.join(f'{v:,.0f}' for v in watched)} | {statistics.median(watched):,.0f} |",
        "",
        f"Cost of {args.viewers} open consoles: {cost:.1%} of sync infer's throughput.",
        f"Events the viewers received per watched cell: {events}.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
