"""In-process onnxruntime throughput: the ceiling that no server can pass."""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.bodies import random_inputs, session


def samples_per_second(model: Path, batch: int, seconds: float) -> float:
    """Rows per second that onnxruntime runs model at batch size batch, for about seconds."""
    sess = session(model)
    width = sess.get_inputs()[0].shape[1]
    x = random_inputs(width, batch)
    for _ in range(3):  # warm-up: first runs allocate
        sess.run(None, {"x": x})
    runs, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        sess.run(None, {"x": x})
        runs += 1
    return runs * batch / elapsed
