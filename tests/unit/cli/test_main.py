"""The `inference-farm` CLI as a subprocess: help, exit codes, one-line errors, db and keys."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_FARM_")}
    env["INFERENCE_FARM_DATA_DIR"] = str(tmp_path / "farm")
    env.update(extra)
    return env


def farm(tmp_path: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inference_farm", *args],
        env=_env(tmp_path, **extra),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_help_lists_commands(tmp_path: Path) -> None:
    result = farm(tmp_path, "--help")
    assert result.returncode == 0, result.stderr
    for command in ("up", "api", "worker", "flower", "db", "keys"):
        assert f"  {command} " in result.stdout, command


def test_api_without_broker(tmp_path: Path) -> None:
    result = farm(tmp_path, "api")
    assert result.returncode == 3
    assert "INFERENCE_FARM_BROKER_URL" in _one_error_line(result)
    assert result.stdout == ""


def test_api_with_http_broker(tmp_path: Path) -> None:
    result = farm(tmp_path, "api", INFERENCE_FARM_BROKER_URL="http://x")
    assert result.returncode == 3
    assert "INFERENCE_FARM_BROKER_URL" in _one_error_line(result)


def test_db_upgrade_twice(tmp_path: Path) -> None:
    first = farm(tmp_path, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    second = farm(tmp_path, "db", "upgrade")
    assert second.returncode == 0, second.stderr
    assert "is at revision" in first.stdout
    assert "None" not in first.stdout
    assert second.stdout == first.stdout
    assert (tmp_path / "farm" / "registry.db").is_file()


@pytest.fixture
def migrated(tmp_path: Path) -> Path:
    result = farm(tmp_path, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    return tmp_path


def test_keys_create_prints_only_the_secret(migrated: Path) -> None:
    result = farm(migrated, "keys", "create", "--name", "a", "--scope", "admin")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("ifk_")


def test_keys_create_bogus_scope(migrated: Path) -> None:
    result = farm(migrated, "keys", "create", "--name", "a", "--scope", "bogus")
    assert result.returncode == 2
    assert "bogus" in _one_error_line(result)
    assert result.stdout == ""


def test_keys_create_unmigrated(tmp_path: Path) -> None:
    result = farm(tmp_path, "keys", "create", "--name", "a", "--scope", "admin")
    assert result.returncode == 4
    assert "inference-farm db upgrade" in _one_error_line(result)
    assert result.stdout == ""


def test_worker_told_to_use_a_missing_gpu_refuses_to_start(tmp_path: Path) -> None:
    result = farm(
        tmp_path,
        "worker",
        "--all-models",
        INFERENCE_FARM_BROKER_URL="redis://127.0.0.1:1/0",
        INFERENCE_FARM_WORKER_DEVICE="cuda:0",
    )
    assert result.returncode == 4
    line = _one_error_line(result)
    assert "cuda:0" in line and "gpu extra" in line


def test_models_upload_of_a_missing_file_is_one_line(tmp_path: Path) -> None:
    result = farm(tmp_path, "models", "upload", "nope.onnx", "--name", "m")
    assert result.returncode == 2
    assert "nope.onnx" in result.stderr and "Traceback" not in result.stderr


def test_models_list_without_an_api_says_where_it_looked(tmp_path: Path) -> None:
    result = farm(tmp_path, "models", "list", INFERENCE_FARM_URL="http://127.0.0.1:1")
    assert result.returncode == 4
    assert "cannot reach http://127.0.0.1:1" in _one_error_line(result)


def test_gpu_pool_on_a_machine_without_gpu_refuses_to_start(tmp_path: Path) -> None:
    pool = Path(__file__).parents[3] / "workers" / "gpu.yaml"
    result = farm(
        tmp_path, "worker", "--pool", str(pool), INFERENCE_FARM_BROKER_URL="redis://127.0.0.1:1/0"
    )
    assert result.returncode == 4
    assert "cuda:0" in _one_error_line(result)


def test_worker_needs_to_be_told_what_to_serve(tmp_path: Path) -> None:
    result = farm(tmp_path, "worker", INFERENCE_FARM_BROKER_URL="redis://127.0.0.1:1/0")
    assert result.returncode == 2
    assert "--all-models" in result.stderr
