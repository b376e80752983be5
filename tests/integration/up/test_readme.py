"""The README's examples (```bash example / ```python example blocks), run against a live farm."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests import onnx_models
from tests.integration.helpers import expected, model_bytes

README = Path(__file__).parents[3] / "README.md"
BLOCK = re.compile(r"```(bash|python) example\n(.*?)\n```", re.DOTALL)


def _examples() -> list[tuple[str, str, str]]:
    """(language, code, the heading above it) for every example, in README order."""
    text = README.read_text(encoding="utf-8")
    found = []
    for match in BLOCK.finditer(text):
        heading = re.findall(r"^#+ (.+)$", text[: match.start()], flags=re.MULTILINE)[-1]
        found.append((match.group(1), match.group(2), heading))
    return found


def _job_outputs(stdout: str) -> dict[str, np.ndarray]:
    """The outputs of the job the submit-and-poll example printed; fails unless it succeeded."""
    job = json.loads(stdout)
    assert job["status"] == "succeeded", job
    outputs = job["result"]["outputs"]
    return {o["name"]: np.reshape(o["data"], o["shape"]).astype(np.float32) for o in outputs}


def test_readme_examples_run_against_a_live_farm(
    grpc_api: tuple[str, str], admin_key: str, worker: subprocess.Popen, tmp_path: Path
) -> None:
    api_url, grpc_address = grpc_api
    onnx_models.save(onnx_models.tiny_mlp(), tmp_path / "tiny.onnx")
    x = np.array([[1, 2, 3, 4]], np.float32)  # what the REST examples send
    (want,) = expected(model_bytes(onnx_models.tiny_mlp()), {"x": x})
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_FARM_")}
    env.update(INFERENCE_FARM_URL=api_url, INFERENCE_FARM_API_KEY=admin_key,
               INFERENCE_FARM_GRPC=grpc_address)  # fmt: skip
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    examples = _examples()
    assert {heading for _lang, _code, heading in examples} >= {
        "CLI", "REST, synchronous (Open Inference Protocol)", "REST, submit and poll",
        "gRPC (Open Inference Protocol)", "Python client",
    }  # fmt: skip
    for language, code, heading in examples:
        argv = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else [
            sys.executable, "-c", code]  # fmt: skip
        done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=180)  # fmt: skip
        assert done.returncode == 0, (heading, code, done.stdout, done.stderr)
        assert done.stdout.strip(), (heading, code)
        if "curl" in code and "/infer" in code:
            assert '"model_name":"tiny"' in done.stdout
        if "/v1/jobs/$JOB" in code:
            np.testing.assert_allclose(_job_outputs(done.stdout)["y"], want, rtol=1e-5)
        if "tritonclient.grpc" in code:  # it sends ones
            (ones,) = expected(model_bytes(onnx_models.tiny_mlp()), {"x": np.ones_like(x)})
            np.testing.assert_allclose(json.loads(done.stdout), ones, rtol=1e-5)
