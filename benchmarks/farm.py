"""The farm under test: a private one (Redis, registry, API, workers), or one already running."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.load import Target
from inference_farm.cli.embedded_redis import free_port, redis_binary, redis_command, wait_for_redis
from inference_farm.cli.supervisor import Supervisor
from inference_farm.cli.up import wait_ready
from inference_farm.client import Client, NotFound
from inference_farm.settings import PREFIX

LABEL = "inference-farm"
# Defaults of the private farm; the environment and then --set override them.
DEFAULT_SETTINGS = {"LOG_LEVEL": "WARNING", "API_HOST": "127.0.0.1"}


@dataclass
class FarmOptions:
    """How the private farm runs: settings (NAME=value, no prefix) and worker processes."""

    settings: dict[str, str] = field(default_factory=dict)
    workers: int = 1
    worker_args: list[str] = field(default_factory=lambda: ["--all-models"])
    ready_timeout: float = 120.0


def parse_settings(pairs: list[str]) -> dict[str, str]:
    """NAME=VALUE pairs as {NAME upper-cased, without the INFERENCE_FARM_ prefix: VALUE}."""
    found = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise SystemExit(f"--set takes NAME=VALUE, got {pair!r}")
        name = name.upper()
        found[name.removeprefix(PREFIX)] = value
    return found


def farm_env(opts: FarmOptions, data_dir: Path, base: dict[str, str]) -> dict[str, str]:
    """The children's environment: runner defaults < base (the environment) < --set."""
    env = {PREFIX + name: value for name, value in DEFAULT_SETTINGS.items()}
    env.update(base)
    env.update({PREFIX + name: value for name, value in opts.settings.items()})
    env[PREFIX + "DATA_DIR"] = str(data_dir)
    env.setdefault(PREFIX + "API_PORT", str(free_port()))
    env.setdefault(PREFIX + "GRPC_PORT", str(free_port()))  # not 8001: the grpc lane's own
    # The batch sizes under each cell come from the worker's metrics.
    env.setdefault(PREFIX + "WORKER_METRICS_PORT", str(free_port()))
    return env


def _farm_cli(env: dict[str, str], *args: str) -> str:
    argv = [sys.executable, "-m", "inference_farm", *args]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"inference-farm {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ensure_model(client: Client, name: str, path: Path) -> dict[str, Any]:
    """Make path the version that name serves (uploading it unless it already is); its record."""
    try:
        serving = client.models.get(name).get("serving_version")
    except NotFound:
        serving = None
    if serving:
        record = client.models.get_version(name, serving)
        if record["sha256"] == sha256_of(path):
            return record
    record = client.models.upload(path, name)
    record = client.models.wait(name, record["version"])
    if record["status"] != "ready":
        raise RuntimeError(f"{name} {record['version']} is {record['status']}: {record['error']}")
    if client.models.get(name).get("serving_version") != record["version"]:
        raise RuntimeError(f"{name} has a pinned default version; unpin it to benchmark")
    return record


def prepare(target: Target, models: dict[str, Path]) -> dict[str, Any]:
    """Upload the models the farm does not serve yet; their version records by name."""
    with Client(target.url, target.key) as client:
        return {name: ensure_model(client, name, path) for name, path in models.items()}


def _start_services(supervisor: Supervisor, opts: FarmOptions, data_dir: Path) -> str:
    env = supervisor.env
    if not env.get(PREFIX + "BROKER_URL"):
        port = free_port()
        env[PREFIX + "BROKER_URL"] = f"redis://127.0.0.1:{port}/0"
        argv = redis_command(redis_binary(), port, data_dir / "redis")
        wait_for_redis(env[PREFIX + "BROKER_URL"], supervisor.start("redis", argv))
    _farm_cli(env, "db", "upgrade")
    key = _farm_cli(env, "keys", "create", "--name", "benchmark", "--scope", "admin")
    supervisor.start("api", supervisor.farm_command("api"))
    for index in range(opts.workers):
        supervisor.start(f"worker{index}", supervisor.farm_command("worker", *opts.worker_args))
    return key


@contextmanager
def private_farm(opts: FarmOptions, work: Path) -> Iterator[Target]:
    """Run a farm of its own in work/ until the block ends, then stop every process."""
    data_dir = (work / "farm").resolve()
    env = farm_env(opts, data_dir, dict(os.environ))
    supervisor = Supervisor(env=env, log_dir=work / "logs" / "farm")
    try:
        key = _start_services(supervisor, opts, data_dir)
        url = f"http://{env[PREFIX + 'API_HOST']}:{env[PREFIX + 'API_PORT']}"
        wait_ready(supervisor, url, opts.ready_timeout)
        metrics = f"http://{env[PREFIX + 'API_HOST']}:{env[PREFIX + 'WORKER_METRICS_PORT']}"
        port = env[PREFIX + "GRPC_PORT"]
        grpc = f"{env[PREFIX + 'API_HOST']}:{port}" if port != "0" else None
        yield Target(url, key, LABEL, metrics + "/metrics" if opts.workers == 1 else None, grpc)
    finally:
        supervisor.stop()
