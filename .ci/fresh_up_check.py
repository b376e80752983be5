"""Run the README's farm command, serve one model through it with the CLI, and stop it.

Used by .ci/fresh-machine on a machine with Python only. Argument: the command that starts
the farm (the tail of the README's first command). Exits non-zero, saying why, if the farm
does not come up, does not serve the model, or does not stop cleanly on Ctrl-C.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# Relu over x: FP32 [n, 4] -> y, built with onnx's helper API (74 bytes; the farm's
# own install has no onnx package to build it with).
RELU = (
    "CAg6QAoMCgF4EgF5IgRSZWx1EgRyZWx1WhQKAXgSDwoNCAESCQoDEgFuCgIIBGIUCgF5Eg8KDQgBEgkKAxIBbgoC"
    "CARCBAoAEA0="
)
UP_WITHIN_S = 180
STOP_WITHIN_S = 60


def fail(message: str, farm: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Say why, show the farm's output, stop it, and exit 1."""
    print(f"fresh-machine: {message}", file=sys.stderr)
    if log is not None and log.exists():
        print(log.read_text()[-6000:], file=sys.stderr)
    if farm is not None and farm.poll() is None:
        os.killpg(farm.pid, signal.SIGKILL)
    sys.exit(1)


def wait_for_key(farm: subprocess.Popen, log: Path) -> str:
    """The admin key from the banner, once the farm says it is up."""
    deadline = time.monotonic() + UP_WITHIN_S
    while time.monotonic() < deadline:
        found = re.search(r"admin key\s+(\S+)", log.read_text())
        if found:
            return found.group(1)
        if farm.poll() is not None:
            fail(f"the farm exited with {farm.returncode} before it was up", None, log)
        time.sleep(0.5)
    fail(f"the farm printed no banner within {UP_WITHIN_S}s", farm, log)
    raise AssertionError


def cli(*args: str, key: str) -> str:
    """Run the installed CLI against the farm; its stdout."""
    env = {**os.environ, "INFERENCE_FARM_URL": "http://127.0.0.1:8000"}
    env["INFERENCE_FARM_API_KEY"] = key
    done = subprocess.run(
        [".venv/bin/inference-farm", *args], env=env, capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"inference-farm {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout


def serve_one_model(key: str, work: Path) -> None:
    """Upload the Relu model, wait for it, and check one inference's answer."""
    import numpy as np

    (work / "relu.onnx").write_bytes(base64.b64decode(RELU))
    np.save(work / "x.npy", np.array([[1.0, -2.0, 3.0, -4.0]], np.float32))
    cli("models", "upload", str(work / "relu.onnx"), "--name", "relu", "--wait", key=key)
    answer = json.loads(cli("infer", "relu", "--input", f"x={work / 'x.npy'}", "--json", key=key))
    text = json.dumps(answer)
    if "[1.0, 0.0, 3.0, 0.0]" not in text and "1.0, -0.0, 3.0, -0.0" not in text:
        raise RuntimeError(f"unexpected answer: {text}")
    print(f"fresh-machine: the farm served relu: {text[:200]}")


def main(command: str) -> None:
    work = Path.cwd() / ".fresh-up"
    work.mkdir(exist_ok=True)
    log = work / "farm.log"
    with log.open("w") as out:
        farm = subprocess.Popen(
            ["bash", "-c", command], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    key = wait_for_key(farm, log)
    with urllib.request.urlopen("http://127.0.0.1:8000/v2/health/ready", timeout=10) as reply:
        print(f"fresh-machine: readiness {reply.read().decode()}")
    try:
        serve_one_model(key, work)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        fail(str(exc), farm, log)
    os.killpg(farm.pid, signal.SIGINT)  # Ctrl-C, as the README says
    try:
        code = farm.wait(STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        fail(f"the farm did not stop within {STOP_WITHIN_S}s of Ctrl-C", farm, log)
        raise
    try:
        os.killpg(farm.pid, 0)
        fail("processes of the farm outlived it after Ctrl-C", farm, log)
    except ProcessLookupError:
        pass
    if code != 0:
        fail(f"the farm exited with {code} on Ctrl-C", None, log)
    print("fresh-machine: the farm stopped cleanly on Ctrl-C")


if __name__ == "__main__":
    main(sys.argv[1])
