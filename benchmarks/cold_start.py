"""Cold start of a model's pool from zero workers: what scale-to-zero costs a waiting job.

.venv/bin/python -m benchmarks.cold_start [--redis-url redis://127.0.0.1:6379/13] [--runs 3]

Real processes on this machine, as KEDA would see them on Kubernetes: a Redis (a database
of its own, which must be empty), a SQLite registry, the farm's API and no worker for the
model. For each model (tiny, heavy of benchmarks/models.py) and each run:

1. the job is submitted through the API, which answers 503 while no live worker serves the
   model's queue (recorded: that is why a pool scaled to zero needs another consumer of the
   queue, or a farm that queues for unserved models);
2. the job is put on the model's queue as the API puts it (enqueue.publish: same payload,
   same priority list), and a worker for the model's pool starts
   (`inference-farm worker --pool <pool of that model>`);
3. the time from the worker's start to the job's result is the cold start. The worker's
   "ready" log line splits it into start-up (interpreter, imports, registry check, broker
   connection) and first job (fetching the job, loading the model's session, running it).

Also timed alone: importing what a worker imports, and loading each model's session.
Prints a table of medians; --json writes every number.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis

from benchmarks.models import SPECS, write_models
from inference_farm.api import enqueue
from inference_farm.broker.app import create_celery
from inference_farm.broker.names import INFER_TASK, model_queue
from inference_farm.broker.queues import QueueWatch, _lists
from inference_farm.cli.embedded_redis import free_port
from inference_farm.cli.supervisor import Supervisor
from inference_farm.cli.up import wait_ready
from inference_farm.client import Client
from inference_farm.protocol.messages import InferJob, encode
from inference_farm.protocol.packing import pack
from inference_farm.settings import PREFIX, load_settings

WORKER_IMPORTS = (
    "import inference_farm.cli.main, inference_farm.cli.serve, inference_farm.worker.tasks, "
    "inference_farm.runtime.sessions, onnxruntime, celery.apps.worker"
)


class _Serving(QueueWatch):
    """The API's queue watch, minus its check that a live worker serves the queue."""

    def serves(self, queue: str) -> bool:
        return True


def _timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.monotonic()
    subprocess.run(argv, env=env, check=True, capture_output=True, timeout=120)
    return time.monotonic() - start


def _session_load_s(path: Path) -> float:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    start = time.monotonic()
    onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return time.monotonic() - start


class Worker:
    """`inference-farm worker --pool FILE`, its stderr timestamped line by line."""

    def __init__(self, env: dict[str, str], pool: Path, log: Path) -> None:
        self.started = time.monotonic()
        argv = [sys.executable, "-m", "inference_farm", "worker", "--pool", str(pool)]
        self.process = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip
        self.lines: list[tuple[float, str]] = []
        self._log = log.open("a", encoding="utf-8")
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self.lines.append((time.monotonic(), line))
            self._log.write(line + "\n")

    def ready_at(self) -> float | None:
        """When Celery logged `... ready.`, in seconds after the start."""
        for at, line in list(self.lines):
            if " ready." in line:
                return at - self.started
        return None

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), as Kubernetes stops a pod; then wait for it."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, 15)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()
        self._reader.join(5)
        self._log.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="cold-start-"))
    broker = redis.Redis.from_url(args.redis_url)
    if broker.dbsize():
        raise SystemExit(f"{args.redis_url} is not empty: give the benchmark a database of its own")
    env = dict(os.environ)
    env.update({
        PREFIX + "BROKER_URL": args.redis_url,
        PREFIX + "DATA_DIR": str(work / "farm"),
        PREFIX + "API_HOST": "127.0.0.1",
        PREFIX + "API_PORT": str(free_port()),
        PREFIX + "GRPC_PORT": "0",
        PREFIX + "LOG_LEVEL": "INFO",
        PREFIX + "WORKER_METRICS_PORT": "0",
    })  # fmt: skip
    models = write_models(work / "models")
    pools = {}
    for name in models:
        pools[name] = work / f"pool-{name}.yaml"
        pools[name].write_text(
            f"models: [{name}]\ndevice: cpu\nconcurrency: 1\nintra_op_threads: 1\n"
        )
    results: dict[str, Any] = {"runs": {}, "imports_s": [], "session_load_s": {}}
    supervisor = Supervisor(env=env, log_dir=work / "logs")
    try:
        cli = [sys.executable, "-m", "inference_farm"]
        subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
        key = subprocess.run(
            [*cli, "keys", "create", "--name", "bench", "--scope", "admin"],
            env=env, check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        url = f"http://127.0.0.1:{env[PREFIX + 'API_PORT']}"
        supervisor.start("api", supervisor.farm_command("api"))
        wait_ready(supervisor, url, 120)
        # A worker for every model validates the uploads, then leaves: no worker remains.
        every = work / "pool-all.yaml"
        every.write_text("models: all\ndevice: cpu\nconcurrency: 1\n")
        validator = Worker(env, every, work / "validator.log")
        with Client(url, key) as client:
            for name, path in models.items():
                record = client.models.upload(path, name)
                record = client.models.wait(name, record["version"], timeout=120)
                assert record["status"] == "ready", record
        validator.stop()
        settings = load_settings(env)
        celery = create_celery(settings)
        watch = _Serving(celery, args.redis_url)
        for name in models:
            width = SPECS[name][0]
            runs = results["runs"][name] = []
            for index in range(args.runs):
                refused, noticed = _until_refused(url, key, name, SPECS[name][0])
                broker.delete(*_lists(model_queue(name)))  # probes the API took, expired
                job = InferJob(name, record_version(client_url=url, key=key, name=name),
                               {"x": pack(np.ones((1, width), np.float32), "FP32")})  # fmt: skip
                task_id = enqueue.publish(
                    celery, watch, INFER_TASK, encode(job), name, 1000,
                    priority=5, argsrepr=f"({name!r}, cold start)",
                )  # fmt: skip
                worker = Worker(env, pools[name], work / f"worker-{name}-{index}.log")
                reply = enqueue.wait(celery, task_id, time.time() + 120)
                done = time.monotonic() - worker.started
                ready = worker.ready_at()
                worker.stop()
                assert reply.ok, reply
                runs.append({
                    "api_without_worker": refused, "api_noticed_s": noticed,
                    "result_s": done, "ready_s": ready,
                    "first_job_s": None if ready is None else done - ready,
                    "compute_ms": reply.compute_ms,
                })  # fmt: skip
                print(f"{name} run {index + 1}: {runs[-1]}", flush=True)
            assert broker.llen(model_queue(name)) == 0
        celery.close()
        for _ in range(args.runs):
            results["imports_s"].append(_timed([sys.executable, "-c", WORKER_IMPORTS], env))
            results["interpreter_s"] = results.get("interpreter_s", [])
            results["interpreter_s"].append(_timed([sys.executable, "-c", "pass"], env))
            for name, path in models.items():
                results["session_load_s"].setdefault(name, []).append(_session_load_s(path))
    finally:
        supervisor.stop()
        broker.flushdb()
        broker.close()
    results["model_bytes"] = {name: path.stat().st_size for name, path in models.items()}
    return results


def _until_refused(url: str, key: str, name: str, width: int) -> tuple[int, float]:
    """Ask the API for name until it answers 503 (no live worker serves the model's queue):
    the status, and how long it took to notice. Each request carries a 1 s deadline, so
    one the API still queued expires unrun."""
    body = {
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, width], "data": [1.0] * width}],
        "parameters": {"timeout": 1_000_000},
    }
    start = time.monotonic()
    while True:
        answer = httpx.post(
            f"{url}/v2/models/{name}/infer", json=body, timeout=30,
            headers={"Authorization": f"Bearer {key}"},
        )  # fmt: skip
        if answer.status_code == 503 or time.monotonic() - start > 60:
            return answer.status_code, time.monotonic() - start
        time.sleep(0.2)


def record_version(client_url: str, key: str, name: str) -> str:
    with Client(client_url, key) as client:
        return str(client.models.get(name)["serving_version"])


def table(results: dict[str, Any]) -> str:
    med = statistics.median
    lines = [
        "| model | size | API, no worker (after) | worker start to result | start-up (to `ready`) "
        "| first job (fetch, load, run) | session load alone |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, runs in results["runs"].items():
        codes = sorted({run["api_without_worker"] for run in runs})
        lines.append(
            f"| {name} | {results['model_bytes'][name] / 1e6:.1f} MB | {codes} "
            f"({med(r['api_noticed_s'] for r in runs):.1f} s) "
            f"| {med(r['result_s'] for r in runs):.2f} s "
            f"| {med(r['ready_s'] for r in runs):.2f} s "
            f"| {med(r['first_job_s'] for r in runs) * 1000:.0f} ms "
            f"| {med(results['session_load_s'][name]) * 1000:.0f} ms |"
        )
    lines.append("")
    lines.append(
        f"Interpreter alone: {med(results['interpreter_s']):.2f} s; a worker's imports "
        f"(interpreter included): {med(results['imports_s']):.2f} s. Medians of "
        f"{len(next(iter(results['runs'].values())))} runs."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write every number here")
    args = parser.parse_args()
    results = run(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
