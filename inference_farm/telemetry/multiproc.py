"""Prometheus multiprocess mode: one fresh directory per service's process tree."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)
ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(kind: str) -> Path:
    """Point this process and its children at an empty metrics directory; removed at exit.

    Must run before prometheus_client is imported: it picks its storage at import time.
    A directory named by PROMETHEUS_MULTIPROC_DIR is used as it is, emptied first.
    """
    if "prometheus_client" in sys.modules and ENV not in os.environ:
        log.warning("prometheus_client was imported before its multiprocess directory was set")
    given = os.environ.get(ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
        return folder
    folder = Path(tempfile.mkdtemp(prefix=f"inference-farm-{kind}-metrics-"))
    os.environ[ENV] = str(folder)
    owner = os.getpid()
    # Only the process that made it removes it, never a forked child that exits first.
    atexit.register(lambda: os.getpid() == owner and shutil.rmtree(folder, ignore_errors=True))
    return folder


def enabled() -> bool:
    """True when this process writes its metrics to a multiprocess directory."""
    return bool(os.environ.get(ENV))


def mark_dead(pid: int) -> None:
    """Forget the live-only gauges of a child process that exited."""
    if enabled():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
