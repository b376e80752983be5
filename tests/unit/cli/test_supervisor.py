"""Supervisor: stop() ends children and grandchildren, even ones that ignore SIGTERM."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import psutil
import pytest

from inference_farm.cli import supervisor
from inference_farm.cli.supervisor import Supervisor

WITH_GRANDCHILD = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    "time.sleep(60)"
)


class Farm(Supervisor):
    """A Supervisor whose children get a real file as stderr, whatever pytest captures."""

    stderr: IO[str] | None = None

    def start(self, name: str, argv: list[str]) -> subprocess.Popen:
        saved, sys.stderr = sys.stderr, self.stderr
        try:
            return super().start(name, argv)
        finally:
            sys.stderr = saved


@pytest.fixture
def stderr_path(tmp_path: Path) -> Path:
    return tmp_path / "stderr.txt"


@pytest.fixture
def farm(stderr_path: Path) -> Iterator[Farm]:
    with stderr_path.open("w", encoding="utf-8") as stderr:
        sup = Farm(env=dict(os.environ))
        sup.stderr = stderr
        yield sup
        sup.stop()


def _gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_for(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_stop_ends_child_and_grandchild(farm: Farm) -> None:
    child = farm.start("parent", [sys.executable, "-c", WITH_GRANDCHILD])
    tree = psutil.Process(child.pid)
    _wait_for(lambda: tree.children(recursive=True))
    family = [tree, *tree.children(recursive=True)]
    assert len(family) == 2
    farm.stop()
    assert farm.children == {}
    assert child.returncode is not None
    for process in family:
        assert _gone(process), process


def test_exited_reports_code(farm: Farm) -> None:
    farm.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"])
    assert farm.exited() is None
    quitter = farm.start("quitter", [sys.executable, "-c", "import sys; sys.exit(3)"])
    quitter.wait(10)
    assert farm.exited() == ("quitter", 3)


def test_watch_returns_1_when_a_child_exits(farm: Farm) -> None:
    farm.start("quitter", [sys.executable, "-c", "import sys; sys.exit(3)"])
    assert farm.watch(interval=0.02) == 1


# Each child records the SIGTERM it gets in the file named by argv[1], then readies argv[2].
ON_TERM = (
    "import pathlib, signal, sys, time; "
    "mark = pathlib.Path(sys.argv[1]); "
    "signal.signal(signal.SIGTERM, lambda *_: {on_term}); "
    "pathlib.Path(sys.argv[2]).touch(); "
    "time.sleep(60)"
)
STUBBORN = ON_TERM.format(on_term="mark.touch()")  # and carries on
# A slow clean exit: a SIGKILL sent without a grace would cut it short.
POLITE = ON_TERM.format(on_term="(time.sleep(0.3), mark.touch(), sys.exit(0))")


def test_stop_terms_then_kills_only_a_child_that_outlives_the_grace(
    farm: Farm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(supervisor, "STOP_GRACE_S", 1.0)
    children = {}
    for name, code in (("stubborn", STUBBORN), ("polite", POLITE)):
        mark, ready = tmp_path / f"{name}.term", tmp_path / f"{name}.ready"
        children[name] = (
            farm.start(name, [sys.executable, "-c", code, str(mark), str(ready)]),
            mark,
        )
        _wait_for(ready.exists)
    with caplog.at_level(logging.WARNING, logger=supervisor.__name__):
        farm.stop()
    got_term = {name: mark.exists() for name, (_child, mark) in children.items()}
    codes = {name: child.returncode for name, (child, _mark) in children.items()}
    assert got_term == {"stubborn": True, "polite": True}
    assert codes == {"stubborn": -signal.SIGKILL, "polite": 0}
    assert [r.getMessage() for r in caplog.records] == [
        "stubborn did not stop within 1s; killing it"
    ]
    assert farm.children == {}


def test_child_stdout_goes_to_stderr(farm: Farm, stderr_path: Path) -> None:
    child = farm.start("talker", [sys.executable, "-c", "print('hello from child')"])
    assert child.wait(10) == 0
    assert "hello from child" in stderr_path.read_text(encoding="utf-8")


def test_farm_command_uses_this_interpreter() -> None:
    argv = Supervisor(env={}).farm_command("api")
    assert argv == [sys.executable, "-m", "inference_farm", "api"]


def test_log_dir_gets_each_childs_stdout_and_stderr(tmp_path: Path) -> None:
    sup = Supervisor(env=dict(os.environ), log_dir=tmp_path / "logs")
    code = "import sys; print('to stdout'); print('to stderr', file=sys.stderr)"
    try:
        assert sup.start("talker", [sys.executable, "-c", code]).wait(10) == 0
    finally:
        sup.stop()
    text = (tmp_path / "logs" / "talker.log").read_text(encoding="utf-8")
    assert "to stdout" in text
    assert "to stderr" in text
