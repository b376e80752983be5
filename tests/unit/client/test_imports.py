"""The client stays light: importing it must not pull in the server's dependencies."""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_ONLY = ("flask", "sqlalchemy", "celery", "onnxruntime", "kombu", "alembic")

PROBE = """
import json, sys
import inference_farm.client
print(json.dumps(sorted(sys.modules)))
"""


def test_client_import_is_light() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    pulled = sorted(name for name in modules if name.split(".")[0] in SERVER_ONLY)
    assert not pulled, pulled
