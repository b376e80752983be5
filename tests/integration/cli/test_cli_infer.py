"""`inference-farm infer|submit|jobs` against a real API and worker, and their one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from inference_farm.client import Client
from tests import onnx_models

X = np.arange(8, dtype=np.float32).reshape(2, 4) / 10


def cli(api_url: str, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_FARM_")}
    env["INFERENCE_FARM_URL"], env["INFERENCE_FARM_API_KEY"] = api_url, key
    return subprocess.run(
        [sys.executable, "-m", "inference_farm", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def expected_y() -> np.ndarray:
    model = onnx_models.tiny_mlp().SerializeToString()
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": X})[0]


@pytest.fixture
def tiny(api_url: str, admin_key: str, worker: subprocess.Popen, tmp_path: Path) -> Path:
    """A ready tiny model, and X saved as x.npy; the .npy's path."""
    path = onnx_models.save(onnx_models.tiny_mlp(), tmp_path / "tiny.onnx")
    with Client(api_url, admin_key) as client:
        record = client.models.upload(path, "tiny")
        assert client.models.wait("tiny", record["version"], timeout=90)["status"] == "ready"
    np.save(tmp_path / "x.npy", X)
    return tmp_path / "x.npy"


def test_infer_submit_and_jobs(api_url: str, admin_key: str, tiny: Path, tmp_path: Path) -> None:
    want = expected_y()
    out = tmp_path / "out.npz"
    result = cli(api_url, admin_key, "infer", "tiny", "--input", f"x={tiny}", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"y FP32 [2, 2]: in {out}"
    with np.load(out) as saved:
        np.testing.assert_allclose(saved["y"], want, rtol=1e-6)

    shown = cli(api_url, admin_key, "infer", "tiny", "--input", f"x={tiny}", "--json")
    assert shown.returncode == 0, shown.stderr
    y = json.loads(shown.stdout)["y"]
    assert (y["shape"], y["datatype"]) == ([2, 2], "FP32")
    np.testing.assert_allclose(y["data"], want, rtol=1e-6)

    waited = cli(api_url, admin_key, "submit", "tiny", "--input", f"x={tiny}", "--wait", "--json")
    assert waited.returncode == 0, waited.stderr
    np.testing.assert_allclose(json.loads(waited.stdout)["y"]["data"], want, rtol=1e-6)

    submitted = cli(api_url, admin_key, "submit", "tiny", "--input", f"x={tiny}", "--priority", "9")
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip()
    done = cli(api_url, admin_key, "jobs", "wait", job_id, "--json")
    assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(json.loads(done.stdout)["y"]["data"], want, rtol=1e-6)
    got = cli(api_url, admin_key, "jobs", "get", job_id)
    assert got.stdout.startswith(f"{job_id}\tsucceeded\ttiny 1.0.0\t"), got.stderr

    listed = cli(api_url, admin_key, "jobs", "list", "--json", "--status", "succeeded")
    assert listed.returncode == 0, listed.stderr
    jobs = json.loads(listed.stdout)
    assert jobs["total"] == 2 and jobs["jobs"][0]["job_id"] == job_id

    cancelled = cli(api_url, admin_key, "jobs", "cancel", job_id)
    assert cancelled.returncode == 2
    assert "already ended" in one_error_line(cancelled)


def test_a_missing_input_file_is_one_line(tmp_path: Path) -> None:
    result = cli("http://127.0.0.1:1", "k", "infer", "tiny", "--input", f"x={tmp_path}/no.npy")
    assert result.returncode == 2
    assert one_error_line(result) == f"Error: input file not found: {tmp_path}/no.npy"


def test_a_file_that_is_not_an_array_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.npy"
    path.write_text("these are not numbers\n")
    result = cli("http://127.0.0.1:1", "k", "submit", "tiny", "--input", f"x={path}")
    assert result.returncode == 2
    assert f"{path} does not hold an array" in one_error_line(result)


def test_an_unknown_model_is_one_line(api_url: str, admin_key: str, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", X)
    result = cli(api_url, admin_key, "infer", "ghost", "--input", f"x={tmp_path / 'x.npy'}")
    assert result.returncode == 5
    assert one_error_line(result) == "error: model 'ghost' not found"
