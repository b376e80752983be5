"""inference_farm.client against a real API and worker: infer, every datatype, jobs, keys."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from inference_farm.client import Client, InvalidInput, NotFound, Unauthorized
from inference_farm.client.tensors import DTYPES
from tests import onnx_models

X = np.arange(12, dtype=np.float32).reshape(3, 4) / 10


@pytest.fixture
def client(api_url: str, admin_key: str) -> Iterator[Client]:
    with Client(api_url, admin_key) as client:
        yield client


def deploy(client: Client, model: object, name: str, folder: Path) -> None:
    """Upload model as name through the client and wait until it is ready."""
    path = onnx_models.save(model, folder / f"{name}.onnx")  # type: ignore[arg-type]
    record = client.models.upload(path, name)
    assert client.models.wait(name, record["version"], timeout=90)["status"] == "ready"


def expected(model: object, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What onnxruntime answers in-process, by output name."""
    session = ort.InferenceSession(
        model.SerializeToString(),  # type: ignore[attr-defined]
        providers=["CPUExecutionProvider"],
    )
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds), strict=True))


def sample(datatype: str) -> np.ndarray:
    if datatype == "BYTES":
        return np.array([[b"a", "h\u00e9".encode()], [b"", b"\x00z"]], dtype=object)
    if datatype == "BOOL":
        return np.array([[True, False], [False, True]])
    return (np.arange(4).reshape(2, 2) + 1).astype(DTYPES[datatype])


def test_infer_every_datatype_and_bad_requests(
    client: Client, worker: subprocess.Popen, tmp_path: Path
) -> None:
    deploy(client, onnx_models.tiny_mlp(), "tiny", tmp_path)
    outputs = client.infer("tiny", {"x": X})
    want = expected(onnx_models.tiny_mlp(), {"x": X})["y"]
    assert outputs["y"].dtype == np.float32
    np.testing.assert_allclose(outputs["y"], want, rtol=1e-6)
    pinned = client.infer("tiny", {"x": X}, version="1.0.0", outputs=["y"], timeout=20)
    np.testing.assert_array_equal(pinned["y"], outputs["y"])
    assert [len(one["y"]) for one in client.infer_many("tiny", [{"x": X}, {"x": X[:1]}])] == [3, 1]

    deploy(client, onnx_models.all_types(), "types", tmp_path)
    inputs = {f"in_{datatype}": sample(datatype) for datatype in onnx_models.ALL_TYPES}
    answered = client.infer("types", inputs)
    for datatype in onnx_models.ALL_TYPES:
        got, sent = answered[f"out_{datatype}"], inputs[f"in_{datatype}"]
        assert got.dtype == sent.dtype, datatype
        np.testing.assert_array_equal(got, sent, err_msg=datatype)

    with pytest.raises(NotFound, match="ghost"):
        client.infer("ghost", {"x": X})
    with pytest.raises(InvalidInput, match="input 'x': expected FP32") as caught:
        client.infer("tiny", {"x": X.astype(np.int64)})
    assert caught.value.status == 400


def test_jobs_submit_batches_results_and_cancel(
    client: Client, worker: subprocess.Popen, tmp_path: Path
) -> None:
    deploy(client, onnx_models.tiny_mlp(), "tiny", tmp_path)
    want = expected(onnx_models.tiny_mlp(), {"x": X})["y"]
    job = client.submit("tiny", {"x": X}, priority=9, timeout=60)
    np.testing.assert_allclose(job.result(timeout=60)["y"], want, rtol=1e-6)
    assert job.status() == "succeeded" and job.info()["model"] == "tiny"

    batch = [{"x": X[i : i + 1]} for i in range(3)]
    jobs = client.submit_many("tiny", batch)
    assert len(jobs) == 3 and len({one.batch_id for one in jobs}) == 1
    for one, row in zip(jobs, want, strict=True):
        np.testing.assert_allclose(one.result(timeout=60)["y"], [row], rtol=1e-6)
    listed = client.jobs(batch_id=jobs[0].batch_id, limit=2)
    assert (listed["total"], len(listed["jobs"])) == (3, 2)
    assert client.jobs(status="succeeded", model="tiny")["total"] == 4

    with pytest.raises(InvalidInput, match="already ended") as caught:
        client.job(job.id).cancel()
    assert caught.value.status == 409
    with pytest.raises(NotFound):
        client.submit("ghost", {"x": X})
    with pytest.raises(NotFound):
        client.job("00000000-0000-0000-0000-000000000000").info()


def test_keys_create_list_revoke(client: Client, api_url: str) -> None:
    created = client.keys.create("reader", ["models:read"], models=["tiny"], expires_in_days=2)
    assert created["secret"].startswith("ifk_") and created["models"] == ["tiny"]
    assert created["expires_at"] is not None
    listed = client.keys.list()
    assert created["id"] in [key["id"] for key in listed]
    assert all("secret" not in key for key in listed)
    with Client(api_url, created["secret"]) as reader:
        assert reader.models.list() == []
        client.keys.revoke(created["id"])
        with pytest.raises(Unauthorized):
            reader.models.list()
    assert client.keys.revoke(created["id"])["revoked_at"] is not None  # revoking again is fine
