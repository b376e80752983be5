"""The systems the farm is compared with: the no-queue baseline and the Ray Serve peer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx

from benchmarks.load import Target
from inference_farm.cli.embedded_redis import free_port
from inference_farm.cli.supervisor import Supervisor

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RAY_VENV = HERE / ".venv-ray"
RAY_PACKAGES = ["ray[serve]", "onnxruntime", "numpy"]
NOQUEUE_LABEL = "no queue: Flask + gunicorn ({workers} sync workers), onnxruntime in-process"
RAY_LABELS = {
    "direct": "Ray Serve {version}, @serve.batch({batch}, {wait_ms:g} ms), direct ingress",
    "proxy": "Ray Serve {version}, @serve.batch({batch}, {wait_ms:g} ms), HTTP proxy",
}


@dataclass(frozen=True)
class PeerOptions:
    """Settings of the peers: gunicorn workers, onnxruntime threads, Ray's batching."""

    noqueue_workers: int = 2
    noqueue_intra_op_threads: int = 1
    ray_max_batch: int = 32
    ray_wait_ms: float = 2.0
    ray_intra_op_threads: int = 0
    start_timeout: float = 180.0


def _wait_live(supervisor: Supervisor, url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        gone = supervisor.exited()
        if gone:
            raise RuntimeError(f"{gone[0]} exited with code {gone[1]}; see its log")
        with suppress(httpx.HTTPError):
            if httpx.get(url + "/v2/health/live", timeout=2.0).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


@contextmanager
def noqueue(models_dir: Path, work: Path, opts: PeerOptions) -> Iterator[Target]:
    """Serve the models with gunicorn sync workers running onnxruntime in-process."""
    port = free_port()
    env = dict(os.environ, BENCH_MODELS_DIR=str(models_dir.resolve()))
    env["BENCH_INTRA_OP_THREADS"] = str(opts.noqueue_intra_op_threads)
    argv = [sys.executable, "-m", "gunicorn", "--chdir", str(ROOT)]
    argv += ["--workers", str(opts.noqueue_workers), "--bind", f"127.0.0.1:{port}"]
    argv += ["--log-level", "warning", "benchmarks.noqueue_app:create_app()"]
    supervisor = Supervisor(env=env, log_dir=work / "logs")
    try:
        supervisor.start("noqueue", argv)
        url = f"http://127.0.0.1:{port}"
        _wait_live(supervisor, url, opts.start_timeout)
        yield Target(url, None, NOQUEUE_LABEL.format(workers=opts.noqueue_workers))
    finally:
        supervisor.stop()


def ensure_ray(log: Path) -> Path | None:
    """The Ray venv's interpreter, creating the venv on first use; None if Ray won't install."""
    python = RAY_VENV / "bin" / "python"
    check = [str(python), "-c", "import ray.serve, onnxruntime"]
    if python.exists() and subprocess.run(check, capture_output=True, check=False).returncode == 0:
        return python
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"installing Ray Serve into {RAY_VENV} (about a minute; output in {log})", flush=True)
    with log.open("ab") as output:
        steps = [
            [sys.executable, "-m", "venv", str(RAY_VENV)],
            [str(python), "-m", "pip", "install", "-q", *RAY_PACKAGES],
        ]
        for step in steps:
            if subprocess.run(step, stdout=output, stderr=output, check=False).returncode != 0:
                return None
    installed = subprocess.run(check, capture_output=True, check=False).returncode == 0
    return python if installed else None


def ray_version(python: Path) -> str:
    """The version of Ray in the Ray venv."""
    argv = [str(python), "-c", "import ray; print(ray.__version__)"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


def _end_session(session_id: int) -> None:
    # Ray's actors leave the process group of the script but stay in its session.
    for entry in Path("/proc").glob("[0-9]*"):
        with suppress(OSError, ValueError, IndexError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) == session_id:
                os.kill(int(entry.name), signal.SIGKILL)


@contextmanager
def ray_serve(
    python: Path, ingress: str, models_dir: Path, work: Path, opts: PeerOptions
) -> Iterator[Target]:
    """Run the Ray Serve peer with the given ingress ("direct" or "proxy") until the block ends."""
    port, ready = free_port(), work / f"ray-{ingress}.ready"
    ready.unlink(missing_ok=True)
    argv = [str(python), str(HERE / "ray_serve_app.py"), "--models-dir", str(models_dir)]
    argv += ["--ingress", ingress, "--port", str(port), "--ready-file", str(ready)]
    argv += ["--max-batch-size", str(opts.ray_max_batch)]
    argv += ["--batch-wait-timeout-s", str(opts.ray_wait_ms / 1000)]
    argv += ["--intra-op-threads", str(opts.ray_intra_op_threads)]
    supervisor = Supervisor(env=dict(os.environ), log_dir=work / "logs")
    process = None
    try:
        process = supervisor.start(f"ray-{ingress}", argv)
        deadline = time.monotonic() + opts.start_timeout
        while not ready.exists():
            if supervisor.exited() or time.monotonic() > deadline:
                raise RuntimeError(f"Ray Serve ({ingress}) did not start; see its log")
            time.sleep(0.5)
        url = f"http://127.0.0.1:{ready.read_text().strip()}"
        label = RAY_LABELS[ingress].format(
            version=ray_version(python), batch=opts.ray_max_batch, wait_ms=opts.ray_wait_ms
        )
        yield Target(url, None, label)
    finally:
        supervisor.stop()
        if process is not None and sys.platform.startswith("linux"):
            _end_session(process.pid)
