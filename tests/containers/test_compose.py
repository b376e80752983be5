"""docker/compose.yaml brought up with podman-compose, on images built here: the whole farm
answers through its containers, a worker container stopped mid-burst loses no job, Prometheus
scrapes every target, and `down` leaves nothing of the project behind.

The images come from conftest.py's fixtures (docker/base/build.sh and docker/build.sh).
podman-compose runs plain `podman`, so the runtime (runc) is set in a containers.conf of the
test's own, named by CONTAINERS_CONF. Without podman or podman-compose the tests skip, and
fail when CI is set.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime
import pytest

from inference_farm.cli.embedded_redis import free_port
from inference_farm.client import Client, GrpcClient
from tests import onnx_models
from tests.containers.conftest import BASE_IMAGES, IMAGES, Built, Podman, ulimits
from tests.services import wait_for

pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker" / "compose.yaml"
# Services of the default profile: what `up` starts, and what must be running.
SERVICES = ("redis", "postgres", "api", "worker-1", "worker-2", "flower", "prometheus")
# The burst: jobs of about a second each on 2 cores, so that a stopped worker is mid-job.
WIDTH, LAYERS, BURST = 1024, 64, 16
ENDED = ("succeeded", "failed", "cancelled", "expired")


def _missing(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"podman-compose is required when CI is set: {reason}")
    pytest.skip(f"podman-compose unavailable: {reason}")


def _compose_command() -> list[str]:
    beside = Path(sys.executable).with_name("podman-compose")
    found = str(beside) if beside.exists() else shutil.which("podman-compose")
    if not found:
        _missing("podman-compose is not installed (pip install podman-compose)")
    return [found]


@dataclass
class Stack:
    """One compose project of the test's own: its name, env file and host ports."""

    project: str
    env_file: Path
    env: dict[str, str]
    ports: dict[str, int]
    compose: list[str]
    admin_key: str = ""
    log: list[str] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        command = [*self.compose, "-p", self.project, "--env-file", str(self.env_file)]
        command += ["-f", str(COMPOSE_FILE), *args]
        return _run(command, self.env, timeout, check)

    def podman(self, *args: str, timeout: float = 120, check: bool = True) -> str:
        return _run(["podman", *args], self.env, timeout, check)

    def settings(self) -> dict[str, str]:
        """The values of the env file the stack was started with."""
        lines = self.env_file.read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def url(self, port: str) -> str:
        return f"http://127.0.0.1:{self.ports[port]}"

    def leftovers(self) -> dict[str, list[str]]:
        """What podman still holds of this project: containers, pods, networks, volumes."""
        label = f"label=io.podman.compose.project={self.project}"
        found = {
            "containers": self.podman("ps", "-a", "--filter", label, "--format", "{{.Names}}"),
            "pods": self.podman("pod", "ps", "--format", "{{.Name}}"),
            "networks": self.podman("network", "ls", "--format", "{{.Name}}"),
            "volumes": self.podman("volume", "ls", "--format", "{{.Name}}"),
        }
        prefixes = (f"{self.project}_", f"pod_{self.project}")
        return {
            kind: [n for n in text.split() if kind == "containers" or n.startswith(prefixes)]
            for kind, text in found.items()
        }


def _run(command: list[str], env: dict[str, str], timeout: float, check: bool) -> str:
    done = subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {done.returncode}\n"
            f"stdout: {done.stdout[-4000:]}\nstderr: {done.stderr[-4000:]}"
        )
    return done.stdout


def _podman_env(podman: Podman, tmp: Path) -> dict[str, str]:
    """The environment of every podman(-compose) call. podman-compose runs plain `podman`, so
    what the tests' podman needs goes in a containers.conf of the test's own: the runtime
    (runc: crun fails here), and conftest's ulimits() (podman's own defaults need
    CAP_SYS_RESOURCE, which CI lacks)."""
    env = podman.script_env()
    if "CONTAINERS_CONF" in env:
        return env
    limits = ", ".join(f'"{value}"' for value in ulimits()[1::2])
    lines = ["[containers]", f"default_ulimits = [{limits}]"]
    if podman.runtime:
        lines += ["[engine]", f'runtime = "{podman.runtime}"']
    conf = tmp / "containers.conf"
    conf.write_text("\n".join(lines) + "\n")
    env["CONTAINERS_CONF"] = str(conf)
    return env


def _write_env_file(path: Path, ports: dict[str, int], extra: dict[str, str]) -> None:
    values = {
        "REDIS_PASSWORD": secrets.token_hex(16),
        "POSTGRES_PASSWORD": secrets.token_hex(16),
        "INFERENCE_FARM_FLOWER_BASIC_AUTH": f"ops:{secrets.token_hex(8)}",
        "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(8),
        "INFERENCE_FARM_METRICS_SCOPE": "open",
        "FARM_BIND": "127.0.0.1",
        "FARM_API_PORT": str(ports["api"]),
        "FARM_GRPC_PORT": str(ports["grpc"]),
        "FARM_FLOWER_PORT": str(ports["flower"]),
        "FARM_PROMETHEUS_PORT": str(ports["prometheus"]),
        "FARM_GRAFANA_PORT": str(ports["grafana"]),
        "REDIS_IMAGE": BASE_IMAGES["redis"],
        "POSTGRES_IMAGE": BASE_IMAGES["postgresql"],
        "PROMETHEUS_IMAGE": BASE_IMAGES["prometheus"],
        "FARM_API_IMAGE": IMAGES["api"],
        "FARM_WORKER_CPU_IMAGE": IMAGES["worker-cpu"],
        **extra,
    }
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))


def _admin_key(stack: Stack) -> str:
    """The docs' one-liner: the first admin key, printed by the API container."""
    output = stack.run(
        "exec", "-T", "api", "inference-farm", "keys", "create", "--name", "admin",
        "--scope", "admin", timeout=60,
    )  # fmt: skip
    return output.strip().splitlines()[-1]


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v2/health/ready", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, podman: Podman, farm_images: dict[str, Built]
) -> Iterator[Stack]:
    """The compose stack on this checkout's images, up and ready; brought down afterwards
    whatever happened."""
    compose = _compose_command()
    tmp = tmp_path_factory.mktemp("compose")
    env = _podman_env(podman, tmp)
    ports = {name: free_port() for name in ("api", "grpc", "flower", "prometheus", "grafana")}
    stack = Stack(f"farmtest{secrets.token_hex(4)}", tmp / "farm.env", env, ports, compose)
    # Workers get 60 s to finish what they run when stopped (the test's jobs take seconds);
    # FARM_WORKER_STOP_GRACE below that cuts them off, and the burst test then fails.
    extra = {"FARM_WORKER_STOP_GRACE": os.environ.get("INFERENCE_FARM_TEST_STOP_GRACE", "60s")}
    _write_env_file(stack.env_file, ports, extra)
    started = time.monotonic()
    try:
        stack.run("up", "-d", timeout=300)
        if not wait_for(lambda: _ready(stack.url("api")), timeout=180, interval=1):
            raise AssertionError(f"the API never became ready\n{_logs(stack)}")
        print(f"stack up and ready in {time.monotonic() - started:.0f} s", file=sys.stderr)
        stack.admin_key = _admin_key(stack)
        yield stack
    finally:
        stack.run("down", "-v", "-t", "10", timeout=300, check=False)


def _logs(stack: Stack) -> str:
    parts = []
    for service in (*SERVICES, "db-upgrade"):
        out = _run(
            ["podman", "logs", "--tail", "30", stack.container(service)], stack.env, 30, False
        )
        parts.append(f"--- {service}\n{out}")
    return "\n".join(parts)


def _client(stack: Stack) -> Client:
    return Client(stack.url("api"), stack.admin_key, timeout=30)


def _upload(client: Client, tmp: Path, model: Any, name: str) -> None:
    path = onnx_models.save(model, tmp / f"{name}.onnx")
    record = client.models.upload(path, name)
    settled = client.models.wait(name, record["version"], timeout=120)
    assert settled["status"] == "ready", settled


def test_every_service_runs(stack: Stack) -> None:
    states = {}
    for service in SERVICES:
        states[service] = stack.podman(
            "inspect", "--format", "{{.State.Status}}", stack.container(service)
        ).strip()
    assert states == dict.fromkeys(SERVICES, "running"), states
    # The migration ran once and succeeded before the API started.
    exit_code = stack.podman(
        "inspect", "--format", "{{.State.ExitCode}}", stack.container("db-upgrade")
    )
    assert exit_code.strip() == "0"


def test_upload_infer_and_job_through_the_api_container(stack: Stack, tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    with _client(stack) as client:
        model = onnx_models.tiny_mlp()
        _upload(client, tmp_path, model, "tiny")
        session = onnxruntime.InferenceSession(model.SerializeToString())
        expected = session.run(None, {"x": x})[0]
        np.testing.assert_allclose(client.infer("tiny", {"x": x})["y"], expected, rtol=1e-5)
        job = client.submit("tiny", {"x": x})
        np.testing.assert_allclose(job.result(timeout=60)["y"], expected, rtol=1e-5)
        assert job.status() == "succeeded"
    # The same model over the API container's gRPC port.
    with GrpcClient(f"127.0.0.1:{stack.ports['grpc']}", stack.admin_key) as grpc_client:
        np.testing.assert_allclose(grpc_client.infer("tiny", {"x": x})["y"], expected, rtol=1e-5)


def test_flower_sees_both_workers(stack: Stack) -> None:
    user, password = stack.settings()["INFERENCE_FARM_FLOWER_BASIC_AUTH"].split(":", 1)

    def workers() -> list[str]:
        try:
            answer = httpx.get(
                f"{stack.url('flower')}/api/workers", params={"refresh": 1},
                auth=(user, password), timeout=10,
            )  # fmt: skip
        except httpx.HTTPError:
            return []
        return list(answer.json()) if answer.status_code == 200 else []

    assert wait_for(lambda: {"worker-1", "worker-2"} <= {w.split("@")[-1] for w in workers()}, 60)


def test_prometheus_scrapes_every_target(stack: Stack) -> None:
    expected = {
        ("inference-farm-api", "api:8000"),
        ("inference-farm-worker", "worker-1:9464"),
        ("inference-farm-worker", "worker-2:9464"),
        ("prometheus", "localhost:9090"),
    }
    seen: dict[tuple[str, str], str] = {}

    def all_up() -> bool:
        try:
            answer = httpx.get(f"{stack.url('prometheus')}/api/v1/targets", timeout=5).json()
        except (httpx.HTTPError, json.JSONDecodeError):
            return False
        seen.clear()
        for target in answer["data"]["activeTargets"]:
            key = (target["labels"]["job"], target["labels"]["instance"])
            seen[key] = f"{target['health']} {target.get('lastError', '')}".strip()
        return set(seen) == expected and all(state == "up" for state in seen.values())

    assert wait_for(all_up, timeout=90, interval=2), seen


def test_worker_stopped_mid_burst_loses_no_job(stack: Stack, tmp_path: Path) -> None:
    """`stop worker-1` while both workers run jobs: worker-1 finishes what it runs (warm
    shutdown within stop_grace_period), hands back what it had reserved, and worker-2 runs
    the rest. Every job ends succeeded, with its exact answer. The visibility timeout is
    the default hour, so a job cut off mid-run would not come back within the test."""
    with _client(stack) as client:
        _upload(client, tmp_path, onnx_models.steady_model(WIDTH, LAYERS), "steady")
        inputs = [np.full((1, WIDTH), 1 + k % 3, np.float32) for k in range(BURST)]
        jobs = [client.submit("steady", {"x": x}) for x in inputs]

        def running() -> int:
            return client.jobs(status="running", model="steady", limit=100)["total"]

        # Three or more running at once: with two slots a worker, both workers are busy.
        assert wait_for(lambda: running() >= 3, timeout=120, interval=0.1)
        started = time.monotonic()
        stack.run("stop", "worker-1", timeout=120)
        stopped_in = time.monotonic() - started
        statuses: dict[str, str] = {}

        def all_ended() -> bool:
            for job in jobs:
                if statuses.get(job.id) not in ENDED:
                    statuses[job.id] = job.status()
            return all(status in ENDED for status in statuses.values())

        ended = wait_for(all_ended, timeout=120, interval=1)
        assert ended and set(statuses.values()) == {"succeeded"}, statuses
        for job, x in zip(jobs, inputs, strict=True):
            assert float(job.result(timeout=10)["y"].item()) == WIDTH * float(x.sum())
    exit_code = stack.podman(
        "inspect", "--format", "{{.State.ExitCode}}", stack.container("worker-1")
    ).strip()
    # A warm shutdown, not the SIGKILL at the end of the grace period.
    assert exit_code == "0", (exit_code, stopped_in)
    print(f"worker-1 stopped in {stopped_in:.1f} s", file=sys.stderr)
    stack.run("start", "worker-1", timeout=60)


def test_down_leaves_nothing(stack: Stack) -> None:
    label = f"label=io.podman.compose.project={stack.project}"
    containers = stack.podman("ps", "-a", "--filter", label, "--format", "{{.Names}}").split()
    assert containers, "no container of the project to bring down"
    # Every volume the containers mount, anonymous ones included, and their networks.
    volumes = stack.podman(
        "inspect", "--format", "{{range .Mounts}}{{.Name}} {{end}}", *containers
    ).split()
    networks = stack.podman(
        "inspect", "--format", "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}} {{end}}",
        *containers,
    ).split()  # fmt: skip
    assert f"{stack.project}_artifacts" in volumes, volumes
    stack.run("down", "-v", "-t", "10", timeout=300)
    left = {
        "containers": [c for c in containers if _exists(stack, "container", c)],
        "volumes": [v for v in set(volumes) if _exists(stack, "volume", v)],
        "networks": [n for n in set(networks) if _exists(stack, "network", n)],
    }
    assert left == {"containers": [], "volumes": [], "networks": []}, left
    # Nor anything else labelled with, or named after, the project (a pod, say).
    leftovers = stack.leftovers()
    assert leftovers == {"containers": [], "pods": [], "networks": [], "volumes": []}, leftovers


def _exists(stack: Stack, kind: str, name: str) -> bool:
    done = subprocess.run(["podman", kind, "exists", name], env=stack.env, check=False)
    return done.returncode == 0
