"""`inference-farm up` on embedded defaults: it serves, prints a working key, and stops clean."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import httpx
import psutil
import pytest

from inference_farm.embedded_redis import free_port
from inference_farm.registry import Database
from inference_farm.registry.keys import verify_key

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


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_up_serves_on_embedded_defaults_and_stops_every_child(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_FARM_")}
    env.update(
        INFERENCE_FARM_DATA_DIR=str(tmp_path / "farm"),
        INFERENCE_FARM_API_PORT=str(port),
        INFERENCE_FARM_API_WORKERS="1",
        INFERENCE_FARM_WORKER_CONCURRENCY="1",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "inference_farm", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "up.err", "wb"),  # noqa: SIM115
        text=True,
    )
    try:
        banner = _banner(process)
        family = psutil.Process(process.pid).children(recursive=True)
        roles = {_role(child) for child in family}
        ready = httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=10)
        key = next(line.split()[2] for line in banner if line.strip().startswith("admin key"))
    finally:
        process.send_signal(stop_signal)
        code = process.wait(timeout=60)

    assert ready.status_code == 200, ready.text
    assert ready.json()["ready"] is True
    assert {"redis", "api", "worker"} <= roles
    assert code == 0
    assert [p.pid for p in family if _alive(p)] == []
    database = Database(f"sqlite:///{tmp_path / 'farm' / 'registry.db'}")
    assert verify_key(database.session(), key).scopes == ["admin"]
    database.engine.dispose()
    assert list((tmp_path / "farm").rglob("*.pid")) == []


def _role(process: psutil.Process) -> str:
    try:
        command = process.cmdline()
    except psutil.NoSuchProcess:
        return "gone"
    if "redis-server" in command[0]:
        return "redis"
    return command[-1] if "inference_farm" in command else "other"


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
