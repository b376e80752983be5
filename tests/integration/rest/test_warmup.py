"""Warmup samples, as Triton's model_warmup: checked and run by validation, run by every worker
that loads the version before it serves, refused with a reason when they do not fit."""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import httpx
import numpy as np
import tritonclient.http as triton

from inference_farm.client import Client
from tests import real_shapes
from tests.integration.helpers import models_cli, post_version, settled_http, triton_infer
from tests.services import wait_for


def npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def request_json(**arrays: np.ndarray) -> bytes:
    inputs = [
        {"name": name, "datatype": "FP32", "shape": list(a.shape), "data": a.ravel().tolist()}
        for name, a in arrays.items()
    ]
    return json.dumps({"inputs": inputs}).encode()


def test_samples_let_a_model_that_needs_real_values_serve_and_warm_each_worker(
    api_url: str, admin_key: str, triton_client: triton.InferenceServerClient,
    worker: subprocess.Popen,
) -> None:  # fmt: skip
    content = real_shapes.needs_sample_values().SerializeToString()
    assert post_version(api_url, admin_key, "strided", content).status_code == 202
    refused = settled_http(api_url, admin_key, "strided", "1.0.0")
    assert refused["status"] == "failed"  # zeros make a step of 0
    assert "declared input shapes failed" in refused["error"] and "warmup" in refused["error"]

    sample = npz(**real_shapes.sample_inputs("needs_sample_values"))
    response = post_version(api_url, admin_key, "strided", content, warmup=("s.npz", sample))
    assert response.status_code == 202
    record = settled_http(api_url, admin_key, "strided", "1.0.1")
    assert (record["status"], record["warmup"], record["warnings"]) == ("ready", True, [])

    headers = {"Authorization": f"Bearer {admin_key}"}
    loaded = httpx.post(f"{api_url}/v2/repository/models/strided/load", headers=headers)
    assert loaded.status_code == 200, loaded.text
    log = Path(worker.log_path)  # type: ignore[attr-defined]
    assert wait_for(lambda: "warmed strided 1.0.1 with its samples" in log.read_text(), 10)
    feeds = real_shapes.sample_inputs("needs_sample_values")
    assert triton_infer(triton_client, "strided", feeds).as_numpy("y").tolist() == [[0, 2, 4, 6]]


def test_a_json_request_is_a_sample_too(
    api_url: str, admin_key: str, worker: subprocess.Popen
) -> None:
    content = real_shapes.reflect_pad_audio().SerializeToString()
    sample = request_json(audio=real_shapes.sample_inputs("reflect_pad_audio")["audio"])
    response = post_version(api_url, admin_key, "pad", content, warmup=("s.json", sample))
    assert response.status_code == 202, response.text
    assert settled_http(api_url, admin_key, "pad", "1.0.0")["status"] == "ready"


def test_samples_that_do_not_fit_or_fail_end_failed_naming_why(
    api_url: str, admin_key: str, worker: subprocess.Popen
) -> None:
    content = real_shapes.reflect_pad_audio().SerializeToString()
    cases = {
        "wrong-name": npz(sound=np.zeros((1, 8), np.float32)),
        "wrong-type": npz(audio=np.zeros((1, 8), np.float64)),
        "wrong-rank": npz(audio=np.zeros(8, np.float32)),
        "fails-to-run": npz(audio=np.zeros((1, 1), np.float32)),  # a reflect pad of 1 sample
    }
    for name, sample in cases.items():
        response = post_version(api_url, admin_key, name, content, warmup=("s.npz", sample))
        assert response.status_code == 202, response.text
    errors = {name: settled_http(api_url, admin_key, name, "1.0.0") for name in cases}
    assert {record["status"] for record in errors.values()} == {"failed"}
    assert "input 'sound' is not an input of the model" in errors["wrong-name"]["error"]
    assert "input 'audio': expected FP32" in errors["wrong-type"]["error"]
    assert "got FP32 [8]" in errors["wrong-rank"]["error"]
    assert errors["fails-to-run"]["error"].startswith("the warmup sample failed to run: ")


def test_a_malformed_sample_file_is_400_before_anything_is_stored(
    api_url: str, admin_key: str
) -> None:
    content = real_shapes.reflect_pad_audio().SerializeToString()
    response = post_version(api_url, admin_key, "pad", content, warmup=("s.npz", b"not a sample"))
    assert response.status_code == 400
    assert "neither .npz nor JSON" in response.json()["error"]
    headers = {"Authorization": f"Bearer {admin_key}"}
    assert httpx.get(f"{api_url}/v1/models/pad", headers=headers).status_code == 404


def test_the_client_and_the_cli_send_samples(
    api_url: str, admin_key: str, worker: subprocess.Popen, tmp_path: Path
) -> None:
    model = tmp_path / "strided.onnx"
    model.write_bytes(real_shapes.needs_sample_values().SerializeToString())
    sample = tmp_path / "sample.npz"
    sample.write_bytes(npz(**real_shapes.sample_inputs("needs_sample_values")))
    with Client(api_url, admin_key) as client:
        record = client.models.upload(model, "strided", warmup=sample)
        assert client.models.wait("strided", record["version"])["status"] == "ready"
    done = models_cli(api_url, admin_key, "upload", str(model), "--name", "strided", "--warmup",
               str(sample), "--wait", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (json.loads(done.stdout)["status"], json.loads(done.stdout)["warmup"]) == ("ready", True)
