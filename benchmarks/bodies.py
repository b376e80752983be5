"""Request bodies for the load script, and the answers onnxruntime gives in-process."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

INPUT_DECIMALS = 4  # short decimal text, so every server parses the same float32 values


@dataclass(frozen=True)
class BodySet:
    """One model's request bodies (one JSON a line), expected outputs (numbers a line) and
    the same requests in Triton's binary form (JSON header, tab, hex of the tensor bytes)."""

    bodies: Path
    expected: Path
    binary: Path | None = None


def session(model: Path) -> Any:
    """An onnxruntime CPU session for model, with onnxruntime's default threading."""
    import onnxruntime as ort

    return ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])


def random_inputs(width: int, count: int, seed: int = 0) -> np.ndarray:
    """count rows of width float32 values in [-1, 1], exact at INPUT_DECIMALS decimals."""
    rng = np.random.default_rng(seed)
    return np.round(rng.uniform(-1.0, 1.0, (count, width)), INPUT_DECIMALS).astype(np.float32)


def body_text(request_id: int, row: np.ndarray) -> str:
    """The OIP JSON request for one batch-1 row, with id request_id."""
    data = ",".join(f"{value:.{INPUT_DECIMALS}f}" for value in row.tolist())
    shape = f"[1,{row.size}]"
    return (
        f'{{"id":"{request_id}","inputs":[{{"name":"x","shape":{shape},'
        f'"datatype":"FP32","data":[{data}]}}]}}'
    )


def binary_text(request_id: int, row: np.ndarray) -> str:
    """The binary-extension request for one batch-1 row: its JSON header, a tab, hex bytes."""
    data = row.astype("<f4").tobytes()
    head = (
        f'{{"id":"{request_id}","inputs":[{{"name":"x","shape":[1,{row.size}],'
        f'"datatype":"FP32","parameters":{{"binary_data_size":{len(data)}}}}}]}}'
    )
    return f"{head}\t{data.hex()}"


def expected_text(outputs: np.ndarray) -> str:
    """One expected output row as space-separated numbers, exact for float32."""
    return " ".join(f"{value:.9g}" for value in outputs.ravel().tolist())


def write_bodies(model: Path, folder: Path, count: int = 64, seed: int = 0) -> BodySet:
    """Write count request bodies for model and, per body id, its in-process output."""
    sess = session(model)
    width = sess.get_inputs()[0].shape[1]
    rows = random_inputs(width, count, seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{model.stem}.{kind}" for kind in ("bodies", "expected", "binary")]
    result = BodySet(*paths)
    with (
        result.bodies.open("w") as bodies,
        result.expected.open("w") as expected,
        paths[2].open("w") as binary,
    ):
        for request_id, row in enumerate(rows):
            bodies.write(body_text(request_id, row) + "\n")
            binary.write(binary_text(request_id, row) + "\n")
            (answer,) = sess.run(None, {"x": row[None, :]})
            expected.write(expected_text(answer) + "\n")
    return result


def first_body(bodies: BodySet) -> tuple[dict, list[float]]:
    """The first request body, parsed, and its expected output numbers."""
    with bodies.bodies.open() as lines:
        body = json.loads(next(lines))
    with bodies.expected.open() as lines:
        expected = [float(token) for token in next(lines).split()]
    return body, expected


def matches(got: list[float], expected: list[float], rtol: float, atol: float) -> bool:
    """Whether got equals expected within atol + rtol * |expected|, element by element."""
    return len(got) == len(expected) and all(
        abs(g - e) <= atol + rtol * abs(e) for g, e in zip(got, expected, strict=True)
    )
