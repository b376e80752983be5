"""`inference-farm status --watch` as a real subprocess against the real API: it refreshes,
each refresh shows the farm as it is then, and Ctrl-C ends it cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests import onnx_models
from tests.integration.conftest import start_worker
from tests.integration.helpers import model_bytes, post_version, settled_http
from tests.services import kill_group, stop_group, wait_for


def _watch(api_url: str, key: str, out: Path, err: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_FARM_")}
    env.update(INFERENCE_FARM_URL=api_url, INFERENCE_FARM_API_KEY=key)
    argv = [sys.executable, "-m", "inference_farm", "status", "--watch", "0.5"]
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        return subprocess.Popen(argv, env=env, stdout=stdout, stderr=stderr,
                                start_new_session=True)  # fmt: skip


def test_status_watch_refreshes_with_each_change_and_stops_on_ctrl_c(
    api_url: str, admin_key: str, farm_env: dict[str, str], tmp_path: Path
) -> None:
    worker = start_worker(farm_env, tmp_path / "worker.log")
    out, err = tmp_path / "watch.out", tmp_path / "watch.err"
    watch = _watch(api_url, admin_key, out, err)
    try:

        def since(offset: int) -> str:
            return out.read_text()[offset:]

        assert wait_for(lambda: since(0).count("\nworkers: 1\n") >= 2, timeout=60), since(0)
        assert "models: 0\n" in since(0)
        mark = len(out.read_text())
        content = model_bytes(onnx_models.tiny_mlp())
        assert post_version(api_url, admin_key, "tiny", content).status_code == 202
        assert settled_http(api_url, admin_key, "tiny", "1.0.0")["status"] == "ready"
        assert wait_for(lambda: "tiny: serving 1.0.0 (1.0.0 ready)" in since(mark), 15), since(mark)

        stop_group(worker)  # a graceful stop removes the worker's heartbeat
        mark = len(out.read_text())
        assert wait_for(lambda: "\nworkers: 0\n" in since(mark), timeout=15), since(mark)
        assert watch.poll() is None, "the watch ended by itself"

        os.killpg(watch.pid, signal.SIGINT)  # Ctrl-C, as a terminal sends it to the group
        assert watch.wait(timeout=15) == 130
        assert err.read_text().strip() == "aborted"  # one line, no traceback
    finally:
        kill_group(watch)
        kill_group(worker)
