"""The images: built by docker/build.sh, run read-only as their own UID, healthy, small.

The API runs with a read-only root filesystem, a tmpfs /tmp and a volume for its data folder
(a SQLite registry migrated by the same image's `db upgrade`), as UID 10001. The CPU worker
runs the same way beside a Redis made from the local base image, and its HEALTHCHECK pings it
through that broker.
"""

from __future__ import annotations

import json

import httpx
import pytest

from inference_farm.cli.embedded_redis import free_port
from tests.containers.conftest import (
    BASE_IMAGES,
    FARM_UID,
    Built,
    Podman,
    unique,
    volume,
)
from tests.services import wait_for

pytestmark = [pytest.mark.containers, pytest.mark.timeout(1800)]

# Ceilings well above today's sizes (docker/README.md), so that a bloated image fails.
MAX_SIZE = {"api": 500_000_000, "worker-cpu": 600_000_000}
COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "x86_64-linux-gnu-gcc", "make")
READ_ONLY = ["--read-only", "--tmpfs", "/tmp:rw,size=64m,mode=1777"]


def _inspect(podman: Podman, image: str) -> dict:
    return json.loads(podman("image", "inspect", image).stdout)[0]


@pytest.mark.parametrize("target", ["api", "worker-cpu"])
def test_image_metadata(podman: Podman, farm_images: dict[str, Built], target: str) -> None:
    info = _inspect(podman, farm_images[target].image)
    config = info["Config"]
    assert config["User"] == f"{FARM_UID}:{FARM_UID}"
    assert config["Entrypoint"] == ["inference-farm"]
    # podman's inspect carries it beside Config, Docker's inside it
    healthcheck = info.get("Healthcheck") or config["Healthcheck"]
    assert healthcheck["Test"][:3] == [
        "CMD", "python3", "/opt/inference-farm/healthcheck.py",
    ]  # fmt: skip
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == f"inference-farm-{target}"
    assert labels["org.opencontainers.image.version"]
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert "/var/lib/inference-farm" in config["Volumes"]


@pytest.mark.parametrize("target", ["api", "worker-cpu"])
def test_no_compiler_and_small(podman: Podman, farm_images: dict[str, Built], target: str) -> None:
    found = podman(
        "run", "--rm", "--network", "none", "--entrypoint", "sh", farm_images[target].image,
        "-c", " ".join(f"command -v {name};" for name in COMPILERS) + " true",
    ).stdout.split()  # fmt: skip
    assert found == []
    assert farm_images[target].size < MAX_SIZE[target], farm_images[target]


def test_api_runs_read_only_as_its_uid_and_is_healthy(
    podman: Podman, farm_images: dict[str, Built]
) -> None:
    image = farm_images["api"].image
    port = free_port()
    name = unique("api")
    # Nothing listens on the broker's port: liveness needs no broker.
    env = ["-e", "INFERENCE_FARM_BROKER_URL=redis://127.0.0.1:1/0"]
    with volume(podman) as data:
        mounts = [*READ_ONLY, "-v", f"{data}:/var/lib/inference-farm"]
        podman("run", "--rm", "--network", "none", *mounts, *env, image, "db", "upgrade")
        try:
            podman(
                "run", "--detach", "--name", name, *mounts, *env,
                "--publish", f"127.0.0.1:{port}:8000", image,
            )  # fmt: skip
            live = f"http://127.0.0.1:{port}/v2/health/live"
            assert wait_for(lambda: _answers(live), timeout=90, interval=0.5), podman(
                "logs", name, check=False
            ).stderr[-3000:]
            assert httpx.get(live, timeout=5).status_code == 200
            assert podman("exec", name, "id", "-u").stdout.strip() == str(FARM_UID)
            # The HEALTHCHECK of the image, run by podman itself.
            health = podman.wait_healthy(name, timeout=30)
            assert health.returncode == 0, health.stdout + health.stderr
            # Read-only, but for the data volume and /tmp.
            denied = podman("exec", name, "touch", "/opt/inference-farm/x", check=False)
            assert denied.returncode != 0
            assert "Read-only file system" in denied.stderr
            podman("exec", name, "touch", "/var/lib/inference-farm/x", "/tmp/x")
            registry = podman("exec", name, "ls", "/var/lib/inference-farm").stdout.split()
            assert any(entry.endswith(".db") for entry in registry), registry
        finally:
            podman.remove(name)


def test_worker_runs_read_only_and_its_healthcheck_pings_it(
    podman: Podman, farm_images: dict[str, Built], base_images: dict[str, str]
) -> None:
    image = farm_images["worker-cpu"].image
    broker, worker = unique("redis"), unique("worker")
    env = ["-e", "INFERENCE_FARM_BROKER_URL=redis://127.0.0.1:6379/0"]
    with volume(podman) as data:
        mounts = [*READ_ONLY, "-v", f"{data}:/var/lib/inference-farm"]
        try:
            podman("run", "--detach", "--name", broker, "--network", "none",
                   base_images["redis"], "--save", "", "--appendonly", "no")  # fmt: skip
            shared = ["--network", f"container:{broker}"]
            podman("run", "--rm", *shared, *mounts, *env, image, "db", "upgrade")
            podman("run", "--detach", "--name", worker, *shared, *mounts, *env, image)
            health = podman.wait_healthy(worker, timeout=90)
            assert health.returncode == 0, (
                health.stdout + health.stderr + podman("logs", worker, check=False).stderr[-3000:]
            )
            assert podman("exec", worker, "id", "-u").stdout.strip() == str(FARM_UID)
            # With its broker gone the ping has no way to the worker: unhealthy.
            podman("stop", "--time", "1", broker)
            assert podman("healthcheck", "run", worker, check=False, timeout=60).returncode != 0
        finally:
            podman.remove(worker, broker)


def test_base_images_have_what_they_are_for(podman: Podman, base_images: dict[str, str]) -> None:
    assert base_images == BASE_IMAGES
    run = ("run", "--rm", "--network", "none")
    # A venv with pip: python3 -m venv needs python3-venv's ensurepip, not only the module.
    pip = podman(*run, base_images["python3"], "sh", "-c",
                 "python3 -m venv /tmp/v && /tmp/v/bin/python -m pip --version").stdout  # fmt: skip
    assert pip.startswith("pip "), pip
    versions = {
        "redis": ("redis-server", "--version"),
        "postgresql": ("postgres", "--version"),
        "prometheus": ("prometheus", "--version"),
    }
    for name, (program, flag) in versions.items():
        out = podman(*run, "--entrypoint", program, base_images[name], flag)
        assert out.returncode == 0 and (out.stdout + out.stderr).strip(), (name, out)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
