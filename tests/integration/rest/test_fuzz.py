"""schemathesis over /openapi.json against the real API and a real worker: no server errors.

Marked `fuzz` and left out of the default run (it takes minutes); `.ci/run` runs it as a
stage of its own: `pytest -m fuzz`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(1800)]
EXAMPLES = int(os.environ.get("INFERENCE_FARM_FUZZ_EXAMPLES", "200"))


def test_no_operation_answers_with_a_server_error(
    api_url: str, admin_key: str, worker: subprocess.Popen, tmp_path: Path
) -> None:
    st = Path(sys.executable).with_name("st")
    command = [
        str(st), "run", f"{api_url}/openapi.json",
        "--header", f"Authorization: Bearer {admin_key}",
        "--checks", "not_a_server_error",
        "--max-examples", str(EXAMPLES),
        # Revoking a key would revoke the fuzzer's own, and every later case proves nothing.
        "--exclude-name", "DELETE /v1/keys/{key_id}",
        # A stream lasts until its client leaves; its bad paths are tested in test_events.
        "--exclude-name", "GET /v1/events",
        "--workers", "2", "--request-timeout", "60", "--no-color",
    ]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=1800, check=False, cwd=tmp_path
    )
    report = done.stdout + done.stderr
    (tmp_path / "schemathesis.txt").write_text(report)
    cases = re.search(r"(\d+) generated", report)
    print(f"schemathesis: {cases.group(0) if cases else 'no count'}")
    assert done.returncode == 0 and "Server error" not in report, report[-6000:]
    assert cases is not None and int(cases.group(1)) >= EXAMPLES
