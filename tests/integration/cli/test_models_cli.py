"""`inference-farm models …` against a real API and worker: upload with --wait, list, delete."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests import onnx_models
from tests.integration.helpers import models_cli


def test_upload_wait_list_show_delete(
    api_url: str, admin_key: str, worker: subprocess.Popen, tmp_path: Path
) -> None:
    path = onnx_models.save(onnx_models.tiny_mlp(), tmp_path / "tiny.onnx")
    uploaded = models_cli(
        api_url, admin_key, "upload", str(path), "--name", "tiny", "--wait", "--json"
    )
    assert uploaded.returncode == 0, uploaded.stderr
    record = json.loads(uploaded.stdout)
    assert (record["version"], record["status"]) == ("1.0.0", "ready")
    assert "uploading" in uploaded.stderr  # the progress bar

    listed = json.loads(models_cli(api_url, admin_key, "list", "--json").stdout)
    assert [(m["name"], m["serving_version"]) for m in listed] == [("tiny", "1.0.0")]
    shown = models_cli(api_url, admin_key, "show", "tiny")
    assert shown.returncode == 0 and "1.0.0  ready" in shown.stdout

    deleted = models_cli(api_url, admin_key, "delete", "tiny", "--version", "1.0.0")
    assert deleted.returncode == 0, deleted.stderr
    assert (
        json.loads(models_cli(api_url, admin_key, "list", "--json").stdout)[0]["serving_version"]
        is None
    )


def test_upload_wait_of_a_bad_file_fails_with_the_reason(
    api_url: str, admin_key: str, worker: subprocess.Popen, tmp_path: Path
) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"definitely not onnx" * 10)
    result = models_cli(api_url, admin_key, "upload", str(path), "--name", "bad", "--wait")
    assert result.returncode == 1
    assert "validation failed: not a valid ONNX model" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_model_is_one_line_with_its_own_exit_code(api_url: str, admin_key: str) -> None:
    result = models_cli(api_url, admin_key, "show", "ghost")
    assert result.returncode == 5
    assert result.stderr.strip() == "error: model 'ghost' not found"
