"""Models with external data, uploaded as one archive to a real API and validated by a real
worker: good archives serve; hostile ones end failed naming the member or location, never
reading outside their own folder."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton

from tests import real_shapes
from tests.integration.helpers import post_version, settled_http, triton_infer
from tests.real_shapes import tar_archive, zip_archive

WEIGHTS = real_shapes.external_weight().astype("<f4").tobytes()


def good_members(folder: str = "") -> dict[str, bytes]:
    return {
        f"{folder}model.onnx": real_shapes.external_model_bytes("weights.bin"),
        f"{folder}weights.bin": WEIGHTS,
    }


@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_an_archive_with_external_data_serves(
    api_url: str, admin_key: str, triton_client: triton.InferenceServerClient,
    worker: subprocess.Popen, tmp_path: Path, kind: str,
) -> None:  # fmt: skip
    if kind == "zip":
        path = zip_archive(tmp_path / "m.zip", good_members("exported/"))
    else:
        path = tar_archive(tmp_path / "m.tar.gz", good_members("exported/"), gzip=True)
    response = post_version(api_url, admin_key, "ext", path.read_bytes(), path.name)
    assert response.status_code == 202, response.text
    record = settled_http(api_url, admin_key, "ext", "1.0.0")
    assert record["status"] == "ready", record["error"]
    assert record["artifact_format"] == ("zip" if kind == "zip" else "tar")
    assert record["archive_entry"] == "exported/model.onnx"
    assert record["size_bytes"] >= len(WEIGHTS)  # the model with its data
    x = real_shapes.sample_inputs("external_data_archive")["x"]
    got = triton_infer(triton_client, "ext", {"x": x}).as_numpy("y")
    np.testing.assert_allclose(got, x @ real_shapes.external_weight(), rtol=1e-5)


def test_a_member_that_escapes_ends_failed_naming_it_and_nothing_lands_outside(
    api_url: str, admin_key: str, farm_env: dict[str, str], tmp_path: Path
) -> None:
    # No worker: a hostile archive is refused as it is listed, before anything is queued.
    cases = {
        "dotdot": ({**good_members(), "../../escape.bin": b"x"}, {}),
        "absolute": ({**good_members(), "/tmp/escape.bin": b"x"}, {}),
        "link": (good_members(), {"w2.bin": "/etc/passwd"}),
    }
    for name, (members, links) in cases.items():
        path = zip_archive(tmp_path / f"{name}.zip", members, links)
        response = post_version(api_url, admin_key, name, path.read_bytes(), path.name)
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "failed"
    errors = {name: settled_http(api_url, admin_key, name, "1.0.0")["error"] for name in cases}
    assert "'../../escape.bin' reaches outside its folder" in errors["dotdot"]
    assert "'/tmp/escape.bin' is an absolute path" in errors["absolute"]
    assert "'w2.bin' is a link" in errors["link"]
    data = Path(farm_env["INFERENCE_FARM_DATA_DIR"])
    assert not list(data.rglob("escape.bin")) and not Path("/tmp/escape.bin").exists()


@pytest.mark.parametrize(
    "location, says",
    [
        ("../weights.bin", "may not contain '..'"),
        ("/etc/passwd", "not a plain relative path"),
        ("*/_ORT_MEM_ADDR_/*", "not a plain relative path"),
        ("missing.bin", "not in the uploaded archive"),
    ],
)
def test_external_data_pointing_outside_the_archive_ends_failed(
    api_url: str, admin_key: str, worker: subprocess.Popen, tmp_path: Path,
    location: str, says: str,
) -> None:  # fmt: skip
    members = {"m/model.onnx": real_shapes.external_model_bytes(location), "m/weights.bin": WEIGHTS}
    if location == "*/_ORT_MEM_ADDR_/*":
        members["m/*/_ORT_MEM_ADDR_/*"] = WEIGHTS  # even a member of that very name
    path = zip_archive(tmp_path / "m.zip", members)
    assert post_version(api_url, admin_key, "bad", path.read_bytes(), "m.zip").status_code == 202
    record = settled_http(api_url, admin_key, "bad", "1.0.0")
    assert record["status"] == "failed"
    assert f"external data location {location!r}" in record["error"] and says in record["error"]


def test_a_model_cannot_read_another_models_artifact(
    api_url: str, admin_key: str, worker: subprocess.Popen, tmp_path: Path
) -> None:
    first = zip_archive(tmp_path / "first.zip", good_members())
    assert post_version(api_url, admin_key, "first", first.read_bytes(), "a.zip").status_code == 202
    sha = settled_http(api_url, admin_key, "first", "1.0.0")["sha256"]
    # Both archives unpack side by side, each in a folder named by its digest.
    sibling = f"../{sha}/weights.bin"
    thief = {"model.onnx": real_shapes.external_model_bytes(sibling), "note.txt": b"x"}
    path = zip_archive(tmp_path / "thief.zip", thief)
    assert post_version(api_url, admin_key, "thief", path.read_bytes(), "t.zip").status_code == 202
    record = settled_http(api_url, admin_key, "thief", "1.0.0")
    assert record["status"] == "failed" and repr(sibling) in record["error"]


def test_which_onnx_file_an_archive_serves(
    api_url: str, admin_key: str, worker: subprocess.Popen, tmp_path: Path
) -> None:
    none = zip_archive(tmp_path / "none.zip", {"weights.bin": WEIGHTS})
    response = post_version(api_url, admin_key, "pick", none.read_bytes(), "none.zip")
    assert response.status_code == 400 and "holds no .onnx file" in response.json()["error"]
    two = zip_archive(tmp_path / "two.zip", {**good_members(), "other.onnx": b"x"})
    response = post_version(api_url, admin_key, "pick", two.read_bytes(), "two.zip")
    assert response.status_code == 400 and "model_file" in response.json()["error"]
    response = post_version(
        api_url, admin_key, "pick", two.read_bytes(), "two.zip", model_file="model.onnx"
    )
    assert response.status_code == 202, response.text
    assert settled_http(api_url, admin_key, "pick", "1.0.0")["status"] == "ready"


def test_an_archive_over_the_limits_is_413_saying_which(
    api_url: str, admin_key: str, tmp_path: Path
) -> None:
    bomb = zip_archive(tmp_path / "bomb.zip", {})  # rewritten below, deflated
    import zipfile

    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.onnx", real_shapes.external_model_bytes("zeros.bin"))
        archive.writestr("zeros.bin", b"\0" * (16 * 2**20))
    response = post_version(api_url, admin_key, "bomb", bomb.read_bytes(), "bomb.zip")
    assert response.status_code == 413
    assert "max_archive_ratio" in response.json()["error"]


def test_a_refused_upload_stores_nothing(
    api_url: str, admin_key: str, farm_env: dict[str, str], tmp_path: Path
) -> None:
    import io

    sample = io.BytesIO()
    np.savez(sample, x=np.ones((1, 256), np.float32))
    none = zip_archive(tmp_path / "none.zip", {"weights.bin": WEIGHTS})
    response = post_version(
        api_url, admin_key, "empty", none.read_bytes(), "none.zip",
        warmup=("s.npz", sample.getvalue()),
    )  # fmt: skip
    assert response.status_code == 400
    store = Path(farm_env["INFERENCE_FARM_DATA_DIR"]) / "artifacts"
    assert not [path for path in store.rglob("*") if path.is_file()]
