"""Importing the runtime loads neither onnxruntime nor onnx nor any server framework."""

from __future__ import annotations

import json
import subprocess
import sys

MODULES = ["cache", "inspect", "memory", "sessions", "smoke", "external"]
HEAVY = ["onnxruntime", "onnx", "flask", "celery", "sqlalchemy"]


def test_runtime_imports_stay_light() -> None:
    code = (
        "import json, sys\n"
        + "".join(f"import inference_farm.runtime.{name}\n" for name in MODULES)
        + f"print(json.dumps([name for name in {HEAVY!r} if name in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == []
