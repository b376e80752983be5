"""The smoke run of an upload: its sample inputs, or made-up ones tried until one runs.

A model whose free dims cannot all be 1 (a reflect Pad needs two samples, a detector's
feature maps need multiples of its stride) is valid all the same, so a failed run on
made-up input is a probe, not a verdict: several sizes are tried within a budget, and a
model that runs on none is still served, with a warning that says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inference_farm.protocol.datatypes import NUMPY_FROM_OIP

# Sizes tried for every free dim after 1: small ones first, then multiples of 8 and 32.
TRIAL_SIZES = (2, 8, 16, 32, 64, 128, 256, 512, 1024)
ALL_FREE_SIZES = (2, 8, 32)  # sizes also tried for leading (batch) dims
MAX_TRIAL_ELEMENTS = 1 << 22  # made-up input of one trial, all inputs together
MAX_TRIALS = 24

Shapes = dict[str, list[int]]


@dataclass
class Outcome:
    """What the smoke run found: the outputs of the run that worked, if any, and warnings."""

    results: list[Any] | None = None
    tries: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ran(self) -> bool:
        """Whether some input ran."""
        return self.results is not None


def has_free_dims(inputs: list[dict]) -> bool:
    """Whether any input has a free dim or an unknown rank."""
    return any(item["shape"] is None or -1 in item["shape"] for item in inputs)


def _sized(inputs: list[dict], leading: int, rest: int) -> Shapes:
    """Every input's shape with its free dims set: dim 0 of rank >= 2 to leading, else rest."""
    shapes = {}
    for item in inputs:
        shape = item["shape"] if item["shape"] is not None else [-1]
        shapes[item["name"]] = [
            dim if dim != -1 else (leading if index == 0 and len(shape) > 1 else rest)
            for index, dim in enumerate(shape)
        ]
    return shapes


def trial_shapes(inputs: list[dict]) -> Iterator[Shapes]:
    """The shapes to try, each once and none over MAX_TRIAL_ELEMENTS, at most MAX_TRIALS."""
    candidates = [_sized(inputs, 1, 1)]
    candidates += [_sized(inputs, 1, size) for size in TRIAL_SIZES]
    candidates += [_sized(inputs, size, size) for size in ALL_FREE_SIZES]
    seen: list[Shapes] = []
    for shapes in candidates:
        elements = sum(math.prod(shape) for shape in shapes.values())
        if shapes in seen or elements > MAX_TRIAL_ELEMENTS:
            continue
        seen.append(shapes)
        yield shapes
        if len(seen) >= MAX_TRIALS:
            return


def made_up_feeds(inputs: list[dict], shapes: Shapes) -> dict[str, np.ndarray]:
    """Zeros (False, empty strings) of the given shapes, one per input."""
    feeds = {}
    for item in inputs:
        fill = "" if item["datatype"] == "BYTES" else 0
        feeds[item["name"]] = np.full(shapes[item["name"]], fill, NUMPY_FROM_OIP[item["datatype"]])
    return feeds


def _described(shapes: Shapes) -> str:
    return ", ".join(f"{name} {shape}" for name, shape in shapes.items())


def probe(
    run: Callable[[dict[str, np.ndarray]], list[Any]],
    inputs: list[dict],
    budget_s: float,
    describe_error: Callable[[BaseException], str] = str,
) -> Outcome:
    """Run made-up inputs of the trial shapes until one runs or the budget is spent."""
    outcome, started = Outcome(), time.monotonic()
    for shapes in trial_shapes(inputs):
        if outcome.tries and time.monotonic() - started > budget_s:
            break
        outcome.tries += 1
        try:
            outcome.results = run(made_up_feeds(inputs, shapes))
            return outcome
        except Exception as exc:
            outcome.errors.append(f"{_described(shapes)}: {describe_error(exc)}")
    outcome.warnings.append(_no_run_warning(outcome))
    return outcome


def _no_run_warning(outcome: Outcome) -> str:
    first = outcome.errors[0] if outcome.errors else "no input fits within the limits"
    last = f"; the last ({outcome.errors[-1]})" if len(outcome.errors) > 1 else ""
    return (
        f"no smoke run succeeded: {outcome.tries} made-up "
        f"input{'s' if outcome.tries != 1 else ''} failed, the first "
        f"({first}){last}. The version is served; upload sample inputs with it "
        "(multipart field warmup) to have them checked and run before it serves"
    )
