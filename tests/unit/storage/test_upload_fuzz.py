"""Mangled warmup files and archives: every one is a clear 4xx error, never a crash."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from inference_farm.errors import FarmError
from inference_farm.protocol import samples
from inference_farm.storage import archives
from tests.real_shapes import tar_archive, zip_archive

LIMITS = archives.Limits(10 * 2**20, 100)
ROUNDS = 300


def mangled(content: bytes, rng: np.random.Generator) -> bytes:
    """content with a few bytes changed, a slice cut out, or its end cut off."""
    data = bytearray(content)
    choice = rng.integers(3)
    if choice == 0:
        for index in rng.integers(0, len(data), size=rng.integers(1, 8)):
            data[index] = int(rng.integers(256))
    elif choice == 1:
        start = int(rng.integers(len(data)))
        del data[start : start + int(rng.integers(1, 64))]
    else:
        del data[int(rng.integers(len(data))) :]
    return bytes(data)


def test_mangled_warmup_files_are_refused_clearly() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, x=np.arange(12, dtype=np.float32).reshape(3, 4), k=np.array(7))
    sources = [
        buffer.getvalue(),
        b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}',
    ]
    rng = np.random.default_rng(0)
    for round_ in range(ROUNDS):
        content = mangled(sources[round_ % 2], rng)
        try:
            samples.parse(content, 1000)
        except FarmError as exc:
            assert 400 <= exc.status < 500, (content, exc)


@pytest.mark.parametrize("kind", ["zip", "tgz"])
def test_mangled_archives_are_refused_clearly(tmp_path: Path, kind: str) -> None:
    members = {"m/model.onnx": b"\x08\x08" * 50, "m/weights.bin": bytes(range(256)) * 8}
    source = tmp_path / f"source.{kind}"
    if kind == "zip":
        zip_archive(source, members)
    else:
        tar_archive(source, members, gzip=True)
    rng = np.random.default_rng(1)
    for round_ in range(ROUNDS):
        path = tmp_path / f"mangled-{round_}"
        path.write_bytes(mangled(source.read_bytes(), rng))
        try:
            fmt = archives.format_of(path)
            if fmt != "onnx":
                archives.entry_of(archives.list_members(path, fmt, LIMITS))
                archives.unpack(path, fmt, tmp_path / f"out-{round_}", LIMITS)
        except FarmError as exc:
            assert 400 <= exc.status < 500, (round_, exc)
