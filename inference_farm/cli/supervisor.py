"""Child processes of `inference-farm up`: started in order, stopped together, none orphaned."""

from __future__ import annotations

import contextlib
import ctypes
import io
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1
STOP_GRACE_S = 15.0


def _die_with_parent() -> None:
    # Linux only: the child gets SIGTERM if `up` itself is killed without cleaning up.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _stderr_fd() -> int | None:
    try:
        return sys.stderr.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return None  # a captured stderr has no descriptor: inherit ours


def _wait_group_gone(pgid: int, timeout: float = 5.0) -> None:
    # Killed grandchildren take a moment to die and be reaped by init.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)
    log.warning("process group %d still has members after SIGKILL", pgid)


@dataclass
class Supervisor:
    """Start named children in their own process groups and stop them all on exit.

    With log_dir set, each child writes its stdout and stderr to log_dir/<name>.log.
    """

    env: dict[str, str]
    children: dict[str, subprocess.Popen] = field(default_factory=dict)
    stopping: bool = False
    log_dir: Path | None = None

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        """Start argv as the child called name, in a new session."""
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
        output = None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            output = (self.log_dir / f"{name}.log").open("ab")
        try:
            # Children write to stderr, so that stdout carries only what `up` itself prints.
            process = subprocess.Popen(
                argv,
                env=self.env,
                stdout=output or _stderr_fd(),
                stderr=output,
                start_new_session=True,
                preexec_fn=preexec,
            )
        finally:
            if output is not None:
                output.close()
        self.children[name] = process
        log.info("started %s (pid %d)", name, process.pid)
        return process

    def farm_command(self, *args: str) -> list[str]:
        """The argv that runs `inference-farm ARGS` with this interpreter."""
        return [sys.executable, "-m", "inference_farm", *args]

    def exited(self) -> tuple[str, int] | None:
        """The first child that has exited, with its code, if any."""
        for name, process in self.children.items():
            code = process.poll()
            if code is not None:
                return name, code
        return None

    def watch(self, interval: float = 0.5) -> int:
        """Block until a child exits or a stop is asked for; return the exit code for `up`."""
        while not self.stopping:
            gone = self.exited()
            if gone:
                log.error("%s exited with code %d; stopping the farm", *gone)
                return 1
            time.sleep(interval)
        return 0

    def stop(self) -> None:
        """SIGTERM each child's process group, newest first; then SIGKILL what is left."""
        for name, process in reversed(list(self.children.items())):
            self._signal(process, signal.SIGTERM)
            try:
                process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", name, STOP_GRACE_S)
            # Also end grandchildren (gunicorn and prefork workers) left in the group.
            self._signal(process, signal.SIGKILL)
            process.wait()
            _wait_group_gone(process.pid)
        self.children.clear()

    @staticmethod
    def _signal(process: subprocess.Popen, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signum)
