"""Podman, the local base images and the farm's images, for the container tests.

The base images come from docker/base/build.sh (Debian bookworm packages; it keeps an image
that exists, so a machine that keeps its images builds them once); the farm's images from
docker/build.sh on BASE_IMAGE=localhost/farm-base/python3:bookworm. Without podman (or
debootstrap, when a base image must be built) the tests skip, and fail when CI is set.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
BASE_IMAGES = {
    name: f"localhost/farm-base/{name}:{SUITE}"
    for name in ("python3", "redis", "postgresql", "prometheus")
}
TAG = os.environ.get("INFERENCE_FARM_TEST_IMAGE_TAG", "dev")  # the tag docker/build.sh gives
IMAGES = {
    target: f"localhost/inference-farm-{target}:{TAG}"
    for target in ("api", "worker-cpu", "worker-gpu")
}
BUILT_BY_TESTS = ("api", "worker-cpu")  # worker-gpu is built by hand (docker/README.md)
FARM_UID = 10001
BUILD_TIMEOUT = 1500  # seconds; the first build of the bases is most of it

_sizes: dict[str, int] = {}


def _missing(kind: str, reason: str) -> None:
    # Skipping is a local convenience only: CI must run every test.
    if os.environ.get("CI"):
        pytest.fail(f"{kind} is required when CI is set: {reason}")
    pytest.skip(f"{kind} unavailable: {reason}")


def ulimits() -> list[str]:
    """--ulimit options this process can grant a container.

    As root, podman raises nofile and nproc to 1048576, which fails ("error setting rlimit")
    where root may not raise its hard limits (no CAP_SYS_RESOURCE), as on this project's CI.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    nproc = resource.getrlimit(resource.RLIMIT_NPROC)[1]
    if nproc == resource.RLIM_INFINITY or nproc > 16384:
        nproc = 16384
    return ["--ulimit", f"nofile={soft}:{hard}", "--ulimit", f"nproc={nproc}:{nproc}"]


class Podman:
    """podman with the OCI runtime the scripts use (PODMAN_RUNTIME, else runc when installed),
    whose `run` and `create` get ulimits() unless the caller passes its own."""

    def __init__(self, executable: str, runtime: str | None) -> None:
        self.executable = executable
        self.runtime = runtime
        self.prefix = [executable, *(["--runtime", runtime] if runtime else [])]
        self.ulimits = ulimits()

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        if args and args[0] in ("run", "create") and "--ulimit" not in args:
            args = (args[0], *self.ulimits, *args[1:])
        result = subprocess.run(
            [*self.prefix, *args], capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
            )
        return result

    def script_env(self, **extra: str) -> dict[str, str]:
        """The environment for docker/build.sh and docker/base/build.sh: this same podman."""
        env = {**os.environ, "PODMAN": self.executable, **extra}
        env["PODMAN_RUNTIME"] = self.runtime or ""
        return env

    def image_size(self, image: str) -> int:
        return int(self("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())

    def remove(self, *containers: str) -> None:
        """Remove containers (stopped at once) and their anonymous volumes, one at a time in
        this order (a container whose network another one joined goes last); absent is fine."""
        for container in containers:
            self("rm", "--force", "--volumes", "--time", "0", container, check=False)
        left = self("ps", "--all", "--format", "{{.Names}}", check=False).stdout.split()
        assert not set(containers) & set(left), f"podman left {set(containers) & set(left)}"

    def wait_healthy(self, container: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """Run the container's HEALTHCHECK until it passes or timeout passes; the last run."""
        deadline = time.monotonic() + timeout
        while True:
            result = self("healthcheck", "run", container, check=False, timeout=60)
            if result.returncode == 0 or time.monotonic() > deadline:
                return result
            time.sleep(1)


@dataclass(frozen=True)
class Built:
    """An image the fixtures built, with its size and how long its build took."""

    image: str
    size: int
    seconds: float


def unique(kind: str) -> str:
    """A container or volume name of this test run alone."""
    return f"farm-test-{uuid.uuid4().hex[:10]}-{kind}"


@contextlib.contextmanager
def volume(podman: Podman) -> Iterator[str]:
    """A named volume, removed afterwards."""
    name = unique("data")
    podman("volume", "create", name)
    try:
        yield name
    finally:
        podman("volume", "rm", "--force", name, check=False)


def _run_script(podman: Podman, argv: list[str], env: dict[str, str], what: str) -> float:
    started = time.monotonic()
    try:
        result = subprocess.run(
            argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{what} took over {BUILD_TIMEOUT} s: {str(exc.stderr)[-3000:]}")
    if result.returncode != 0:
        pytest.fail(f"{what} exited {result.returncode}:\n{result.stderr[-6000:]}")
    return time.monotonic() - started


@pytest.fixture(scope="session")
def podman() -> Podman:
    executable = shutil.which("podman")
    if executable is None:
        _missing("podman", "not on PATH (apt-get install podman runc uidmap slirp4netns)")
    runtime = os.environ.get("PODMAN_RUNTIME") or shutil.which("runc")
    tool = Podman(executable, runtime)
    info = tool("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False)
    if info.returncode != 0:
        _missing("podman", f"`podman info` failed: {info.stderr.strip()[-500:]}")
    return tool


@pytest.fixture(scope="session")
def base_images(podman: Podman) -> dict[str, str]:
    """The local base images, built by docker/base/build.sh unless they exist."""
    absent = [
        image
        for image in BASE_IMAGES.values()
        if podman("image", "exists", image, check=False).returncode
    ]
    if absent and shutil.which("debootstrap") is None:
        _missing("debootstrap", f"needed to build {', '.join(absent)}")
    _run_script(podman, ["docker/base/build.sh"], podman.script_env(), "docker/base/build.sh")
    for name, image in BASE_IMAGES.items():
        _sizes[f"base {name}"] = podman.image_size(image)
    return BASE_IMAGES


@pytest.fixture(scope="session")
def farm_images(podman: Podman, base_images: dict[str, str]) -> dict[str, Built]:
    """The API and CPU worker images, built by docker/build.sh on the local python3 base."""
    env = podman.script_env(BASE_IMAGE=base_images["python3"], TAG=TAG, PYTHON=sys.executable)
    built = {}
    for target in BUILT_BY_TESTS:
        seconds = _run_script(podman, ["docker/build.sh", target], env, f"docker/build.sh {target}")
        size = podman.image_size(IMAGES[target])
        _sizes[target] = size
        built[target] = Built(IMAGES[target], size, seconds)
    return built


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _sizes:
        terminalreporter.section("image sizes")
        for name, size in _sizes.items():
            terminalreporter.write_line(f"{name:24} {size / 1e6:8.1f} MB")
