"""Real services for integration tests: Redis, PostgreSQL, SQLite and a Celery worker process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
import tritonclient.http as triton
from flask.testing import FlaskClient

from inference_farm.api import create_app
from inference_farm.cli.embedded_redis import free_port
from inference_farm.registry import Base, Database
from inference_farm.registry.migrate import upgrade
from inference_farm.settings import Settings, load_settings
from tests.integration.helpers import Bearer, LiveClient, authorized, new_admin_key
from tests.services import (
    ServiceMissing,
    kill_group,
    postgres_server,
    redis_server,
    scratch_database,
    wait_for,
)


def _missing(kind: str, reason: str) -> None:
    # Skipping is a local convenience only: CI must run every test.
    if os.environ.get("CI"):
        pytest.fail(f"{kind} is required when CI is set: {reason}")
    pytest.skip(f"{kind} unavailable: {reason}")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a real Redis database reserved for the tests."""
    stack = contextlib.ExitStack()
    try:
        url = stack.enter_context(redis_server())
    except ServiceMissing as exc:
        _missing("Redis", str(exc))
    with stack:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a real PostgreSQL server's maintenance database."""
    stack = contextlib.ExitStack()
    try:
        url = stack.enter_context(postgres_server())
    except ServiceMissing as exc:
        _missing("PostgreSQL", str(exc))
    with stack:
        yield url


@pytest.fixture
def broker_url(redis_url: str) -> Iterator[str]:
    """The test Redis database, empty before the test and emptied after it."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield redis_url
    client.flushdb()
    client.close()


@pytest.fixture
def fresh_postgres(postgres_url: str) -> Iterator[str]:
    """URL of a brand-new, unmigrated PostgreSQL database, dropped after the test."""
    with scratch_database(postgres_url) as url:
        yield url


@pytest.fixture(scope="session")
def migrated_postgres(postgres_url: str) -> Iterator[str]:
    """URL of a PostgreSQL database at the head revision, shared by the session."""
    with scratch_database(postgres_url) as url:
        database = Database(url)
        upgrade(database)
        database.engine.dispose()
        yield url


def _empty_tables(database: Database) -> None:
    database.remove()
    with database.engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of a migrated registry: an SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.db'}"
        database = Database(url)
        upgrade(database)
        database.engine.dispose()
        return url
    return request.getfixturevalue("migrated_postgres")


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """A migrated registry whose rows are deleted after the test."""
    database = Database(database_url)
    yield database
    _empty_tables(database)
    database.engine.dispose()


@pytest.fixture
def farm_database(migrated_postgres: str) -> Iterator[str]:
    """The shared migrated PostgreSQL database, its rows deleted after the test."""
    yield migrated_postgres
    database = Database(migrated_postgres)
    _empty_tables(database)
    database.engine.dispose()


@pytest.fixture
def farm_env(tmp_path: Path, broker_url: str, farm_database: str) -> dict[str, str]:
    """Environment for farm processes: test Redis, migrated PostgreSQL, a private data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERENCE_FARM_")}
    env.update(
        INFERENCE_FARM_BROKER_URL=broker_url,
        INFERENCE_FARM_DATABASE_URL=farm_database,
        INFERENCE_FARM_DATA_DIR=str(tmp_path / "data"),
        INFERENCE_FARM_WORKER_CONCURRENCY="1",
        INFERENCE_FARM_GRPC_PORT="0",  # tests/integration/grpc/ turns it on, on a free port
    )
    return env


@pytest.fixture
def farm_settings(farm_env: dict[str, str]) -> Settings:
    """The same settings as farm_env, for in-process use (API app, Celery client)."""
    return load_settings(env=farm_env)


@pytest.fixture
def admin_key(farm_database: str) -> str:
    """The secret of an admin key in the test registry."""
    return new_admin_key(farm_database)


@pytest.fixture
def api(farm_settings: Settings, admin_key: str) -> FlaskClient:
    """A test client of the API on the integration services, sending an admin key."""
    return authorized(create_app(farm_settings), admin_key)


@pytest.fixture
def triton_client(api_url: str, admin_key: str) -> triton.InferenceServerClient:
    """tritonclient.http against the real API, sending an admin key."""
    client = triton.InferenceServerClient(api_url.removeprefix("http://"), concurrency=50)
    client.register_plugin(Bearer(admin_key))
    return client


def start_worker(env: dict[str, str], log_path: Path, *options: str) -> subprocess.Popen:
    """Start `inference-farm worker OPTIONS` (default --all-models) in its own session,
    logging to log_path."""
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "inference_farm", "worker", *(options or ["--all-models"])],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    process.log_path = log_path  # type: ignore[attr-defined]
    return process


@pytest.fixture
def worker(farm_env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen]:
    """A real `inference-farm worker` process on the test services; stopped after the test."""
    process = start_worker(farm_env, tmp_path / "worker.log")
    yield process
    kill_group(process)


@contextlib.contextmanager
def running_api(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """A real `inference-farm api` on env, logging to log_path, until the block ends; its URL."""
    port = free_port()
    env = {"INFERENCE_FARM_API_WORKERS": "1", **env, "INFERENCE_FARM_API_PORT": str(port)}
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "inference_farm", "api"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _live(url), timeout=60), log_path.read_text()
        yield url
    finally:
        kill_group(process)


@contextlib.contextmanager
def running_grpc_api(env: dict[str, str], log_path: Path) -> Iterator[tuple[str, str]]:
    """running_api() with gRPC on too, on a free port: (its URL, its gRPC address)."""
    port = free_port()
    with running_api({**env, "INFERENCE_FARM_GRPC_PORT": str(port)}, log_path) as url:
        yield url, f"127.0.0.1:{port}"


@pytest.fixture
def grpc_api(farm_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real `inference-farm api` serving HTTP and gRPC: (its URL, its gRPC address)."""
    with running_grpc_api(farm_env, tmp_path / "api.log") as found:
        yield found


@pytest.fixture
def api_url(farm_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """URL of a real `inference-farm api` on the test services."""
    with running_api(farm_env, tmp_path / "api.log") as url:
        yield url


def _live(url: str) -> bool:
    try:
        return httpx.get(url + "/v2/health/live", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def live(api_url: str, admin_key: str) -> Iterator[LiveClient]:
    """The real API (where sync infer is answered) as a test client, sending an admin key."""
    client = LiveClient(api_url, admin_key)
    yield client
    client.close()
