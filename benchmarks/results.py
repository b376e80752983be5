"""The results: one JSON document of raw numbers, and the markdown table made from it."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

# cell name: (model, connections)
CELLS: dict[str, tuple[str, int]] = {
    "tiny-c1": ("tiny", 1),
    "tiny-c32": ("tiny", 32),
    "heavy-c32": ("heavy", 32),
}
HEADER = (
    "| system | tiny c=1 p50 | tiny c=1 p99 | tiny c=32 req/s | heavy c=32 req/s | errors |\n"
    "| --- | --: | --: | --: | --: | --: |"
)
MISSING = "-"


# How each figure of a cell combines over rounds: medians of rates and latencies, sums of counts.
MEDIAN_KEYS = ("correct_per_s", "p50_ms", "p99_ms", "mean_ms", "mean_batch_size")
SUM_KEYS = ("correct", "wrong", "non_200", "socket_errors", "timeouts", "responses")


def merge_rounds(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """One system's results over several rounds: per cell the median of each rate and
    latency and the sum of each count; every round's cells kept under "rounds"."""
    failed = [entry for entry in entries if entry["status"] != "ok"]
    if failed or len(entries) == 1:
        return failed[0] if failed else entries[0]
    merged = {**entries[0], "cells": {}, "rounds": [entry["cells"] for entry in entries]}
    for cell in entries[0]["cells"]:
        rounds = [entry["cells"][cell] for entry in entries if cell in entry["cells"]]
        combined = dict(rounds[0])
        for key in MEDIAN_KEYS:
            values = [r[key] for r in rounds if r.get(key) is not None]
            combined[key] = statistics.median(values) if values else None
        for key in SUM_KEYS:
            combined[key] = sum(r.get(key, 0) for r in rounds)
        combined["first_error"] = next(
            (r["first_error"] for r in rounds if r.get("first_error")), ""
        )
        merged["cells"][cell] = combined
    return merged


def cell_errors(cell: dict[str, Any]) -> int:
    """Answers that did not count: wrong, non-200, socket errors and timeouts."""
    return sum(cell.get(name, 0) for name in ("wrong", "non_200", "socket_errors", "timeouts"))


def milliseconds(value: float | None) -> str:
    """A latency in ms with about three significant digits."""
    if value is None:
        return MISSING
    digits = 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:.{digits}f} ms"


def per_second(value: float | None) -> str:
    """A rate as a whole number with thousands separators."""
    return MISSING if value is None else f"{value:,.0f}"


def _pick(cells: dict[str, Any], cell: str, key: str) -> float | None:
    if cell not in cells or (key.endswith("_ms") and not cells[cell].get("responses")):
        return None  # no answer: no latency to show
    return cells[cell][key]


def row(system: dict[str, Any]) -> str:
    """The table row of one system's results."""
    cells = system.get("cells", {})
    if system["status"] != "ok":
        errors = f"{system['status']}: {system.get('reason', '')}".replace("|", "/")
    else:
        errors = f"{sum(cell_errors(cell) for cell in cells.values()):,}"
    values = [
        system["label"],
        milliseconds(_pick(cells, "tiny-c1", "p50_ms")),
        milliseconds(_pick(cells, "tiny-c1", "p99_ms")),
        per_second(_pick(cells, "tiny-c32", "correct_per_s")),
        per_second(_pick(cells, "heavy-c32", "correct_per_s")),
        errors,
    ]
    return "| " + " | ".join(values) + " |"


def inprocess_line(inprocess: dict[str, float]) -> str:
    """The in-process onnxruntime ceiling as one sentence."""
    parts = [f"{per_second(rate)} samples/s at batch {batch}" for batch, rate in inprocess.items()]
    return "In-process onnxruntime, heavy: " + ", ".join(parts) + "."


def markdown(results: dict[str, Any]) -> str:
    """The results page: how it was run, the table, and the in-process ceiling."""
    run = results["run"]
    lines = [
        "# Benchmark results",
        "",
        f"{run['date']} on {run['machine']}; {run['duration_s']:g} s per cell after "
        f"{run['warmup_s']:g} s of warm-up; wrk with {run['wrk_threads']} threads"
        + (
            f"; each figure the median of {run['rounds']} rounds, the systems in turn, "
            "every other round in reverse order."
            if run.get("rounds", 1) > 1
            else "."
        ),
        "Only correct answers count toward req/s; errors counts every other answer.",
        "",
        f"`{run['command']}`",
        "",
        HEADER,
        *(row(system) for system in results["systems"]),
    ]
    lines += [batch_line(system) for system in results["systems"] if batch_line(system)]
    if results.get("inprocess"):
        lines += ["", inprocess_line(results["inprocess"])]
    return "\n".join(lines) + "\n"


def batch_line(system: dict[str, Any]) -> str:
    """The mean batch size each cell's requests ran in, from the worker's metrics, if known."""
    sizes = [
        f"{cell} {values['mean_batch_size']:.1f}"
        for cell, values in system.get("cells", {}).items()
        if values.get("mean_batch_size") is not None
    ]
    if not sizes:
        return ""
    return (
        f"\n{system['label']}: mean batch size a request ran in "
        f"(worker metric `inference_farm_inference_batch_size`): {', '.join(sizes)}."
    )


def write(results: dict[str, Any], markdown_path: Path, json_path: Path) -> str:
    """Write the JSON and the markdown page; return the markdown."""
    json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    text = markdown(results)
    markdown_path.write_text(text, encoding="utf-8")
    return text
