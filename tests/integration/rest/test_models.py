"""Model lifecycle against real services: upload, validation on a worker, versions, deletion."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from inference_farm.broker.app import create_celery
from inference_farm.broker.names import CONTROL_QUEUE
from inference_farm.settings import Settings, load_settings
from tests import onnx_models
from tests.integration.helpers import client_for, model_bytes, settled, upload

TINY = model_bytes(onnx_models.tiny_mlp())


def test_upload_validates_on_a_worker_and_records_the_signature(
    api: FlaskClient, worker: subprocess.Popen, farm_settings: Settings
) -> None:
    content = model_bytes(onnx_models.tiny_mlp())
    response = upload(api, "tiny", content, description="first")
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert (body["model"], body["version"], body["status"]) == ("tiny", "1.0.0", "pending")
    assert response.headers["Location"].endswith("/v1/models/tiny/versions/1.0.0")
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert body["size_bytes"] == len(content)

    record = settled(api, "tiny", "1.0.0")
    assert record["status"] == "ready", record
    assert record["error"] is None
    assert record["batchable"] is True
    assert record["load_time_ms"] > 0 and record["memory_bytes"] >= 0
    signature = record["signature"]
    assert [(t["name"], t["datatype"], t["shape"]) for t in signature["inputs"]] == [
        ("x", "FP32", [-1, 4])
    ]
    assert [(t["name"], t["datatype"], t["shape"]) for t in signature["outputs"]] == [
        ("y", "FP32", [-1, 2])
    ]
    stored = Path(farm_settings.data_dir, "artifacts", body["sha256"][:2], body["sha256"] + ".onnx")
    assert stored.read_bytes() == content


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"this is not a model at all" * 10, "not a valid ONNX model"),
        (TINY[: len(TINY) // 2], "not a valid ONNX model"),
    ],
    ids=["corrupt", "truncated"],
)
def test_bad_files_end_failed_and_the_worker_keeps_serving(
    api: FlaskClient, worker: subprocess.Popen, farm_settings: Settings, content: bytes, reason: str
) -> None:
    assert upload(api, "broken", content).status_code == 202
    record = settled(api, "broken", "1.0.0")
    assert record["status"] == "failed"
    assert reason in record["error"]
    celery = create_celery(farm_settings)
    assert celery.send_task("farm.ping", queue=CONTROL_QUEUE).get(timeout=30)
    assert worker.poll() is None


def test_empty_file_is_refused_before_anything_is_stored(
    api: FlaskClient, farm_settings: Settings
) -> None:
    response = upload(api, "empty", b"")
    assert response.status_code == 400
    assert "empty" in response.get_json()["error"]
    assert api.get("/v1/models/empty").status_code == 404


def test_upload_over_the_limit_gets_413(farm_env: dict[str, str]) -> None:
    settings = load_settings(env={**farm_env, "INFERENCE_FARM_MAX_UPLOAD_BYTES": "1000"})
    response = upload(client_for(settings), "big", b"\0" * 5000)
    assert response.status_code == 413
    assert "1000 bytes" in response.get_json()["message"]


@pytest.mark.parametrize("name", ["-starts-with-dash", "has space", "x" * 65, "semi;colon"])
def test_bad_model_names_get_400_naming_the_rule(api: FlaskClient, name: str) -> None:
    response = upload(api, name, b"\x08\x07")
    assert response.status_code == 400
    assert "start with a letter or digit" in response.get_json()["error"]


@pytest.mark.parametrize("version", ["1.2", "v1.0.0", "01.0.0", "1.0.0-rc1"])
def test_bad_versions_get_400(api: FlaskClient, version: str) -> None:
    response = upload(api, "m", b"\x08\x07", version=version)
    assert response.status_code == 400
    assert "MAJOR.MINOR.PATCH" in response.get_json()["error"]


def test_versions_default_duplicates_and_pinning(
    api: FlaskClient, worker: subprocess.Popen
) -> None:
    content = model_bytes(onnx_models.tiny_mlp())
    assert upload(api, "v", content).get_json()["version"] == "1.0.0"
    assert upload(api, "v", content, version="1.4.2").get_json()["version"] == "1.4.2"
    assert upload(api, "v", content).get_json()["version"] == "1.4.3"
    duplicate = upload(api, "v", content, version="1.4.2")
    assert duplicate.status_code == 409
    assert "already exists" in duplicate.get_json()["error"]
    for version in ("1.0.0", "1.4.2", "1.4.3"):
        assert settled(api, "v", version)["status"] == "ready"

    assert api.get("/v1/models/v").get_json()["serving_version"] == "1.4.3"
    pinned = api.patch("/v1/models/v", json={"default_version": "1.0.0"})
    assert pinned.status_code == 200
    assert pinned.get_json()["serving_version"] == "1.0.0"
    assert api.get("/v2/models/v").get_json()["versions"] == ["1.4.3", "1.4.2", "1.0.0"]
    assert api.get("/v2/models/v/ready").get_json()["version"] == "1.0.0"
    unpinned = api.patch("/v1/models/v", json={"default_version": None})
    assert unpinned.get_json()["serving_version"] == "1.4.3"
    assert api.patch("/v1/models/v", json={"default_version": "9.9.9"}).status_code == 404


def test_identical_files_are_stored_once_and_kept_while_referenced(
    api: FlaskClient, worker: subprocess.Popen, farm_settings: Settings
) -> None:
    content = model_bytes(onnx_models.tiny_mlp())
    first = upload(api, "a", content).get_json()
    second = upload(api, "b", content).get_json()
    assert first["sha256"] == second["sha256"]
    artifacts = list(Path(farm_settings.data_dir, "artifacts").rglob("*.onnx"))
    assert len(artifacts) == 1
    settled(api, "a", "1.0.0")
    settled(api, "b", "1.0.0")

    retired = api.delete("/v1/models/a/versions/1.0.0")
    assert retired.status_code == 200
    assert retired.get_json()["status"] == "retired"
    assert artifacts[0].exists()  # model b still refers to it
    assert api.get("/v2/models/a/versions/1.0.0").status_code == 404
    assert api.get("/v2/models/a").status_code == 404

    assert api.delete("/v1/models/b").status_code == 204
    assert api.get("/v1/models/b").status_code == 404
    assert not artifacts[0].exists()


def test_unknown_models_get_404_with_the_right_body(api: FlaskClient) -> None:
    v2 = api.get("/v2/models/nothing")
    assert v2.status_code == 404
    assert v2.get_json() == {"error": "model 'nothing' not found"}
    v1 = api.get("/v1/models/nothing/versions/1.0.0")
    assert v1.status_code == 404
    assert v1.get_json()["message"] == v1.get_json()["error"] == "model 'nothing' not found"


def test_create_model_then_list_and_describe(api: FlaskClient) -> None:
    created = api.post("/v1/models", json={"name": "described", "description": "hello"})
    assert created.status_code == 201
    assert api.post("/v1/models", json={"name": "described"}).status_code == 409
    listed = api.get("/v1/models").get_json()
    assert [(m["name"], m["description"], m["versions"]) for m in listed] == [
        ("described", "hello", [])
    ]
    assert api.post("/v1/models", json={"name": "bad name"}).status_code == 400
