"""The initial migration on real PostgreSQL and SQLite: applies, repeats, reverts, stays stable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from inference_farm.errors import SchemaNotReady
from inference_farm.registry import Base, Database
from inference_farm.registry.migrate import (
    current_revision,
    downgrade,
    ensure_current,
    head_revision,
    upgrade,
)

TABLES = {"models", "model_versions", "api_keys", "jobs", "alembic_version"}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'empty.db'}"
    return request.getfixturevalue("fresh_postgres")


def test_upgrade_creates_every_table_and_a_second_run_is_a_noop(empty_url: str) -> None:
    database = Database(empty_url)
    upgrade(database)
    assert set(sa.inspect(database.engine).get_table_names()) == TABLES
    assert current_revision(database.engine) == head_revision()
    upgrade(database)
    assert current_revision(database.engine) == head_revision()
    database.engine.dispose()


def test_models_match_the_migration_so_autogenerate_stays_empty(empty_url: str) -> None:
    database = Database(empty_url)
    upgrade(database)
    with database.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    database.engine.dispose()
    assert diff == []


def test_downgrade_to_base_removes_the_schema_and_upgrade_restores_it(empty_url: str) -> None:
    database = Database(empty_url)
    upgrade(database)
    downgrade(database, "base")
    assert set(sa.inspect(database.engine).get_table_names()) <= {"alembic_version"}
    upgrade(database)
    assert set(sa.inspect(database.engine).get_table_names()) == TABLES
    database.engine.dispose()


def test_unmigrated_database_says_to_run_db_upgrade(empty_url: str) -> None:
    database = Database(empty_url)
    with pytest.raises(SchemaNotReady, match=r"run `inference-farm db upgrade`"):
        ensure_current(database)
    database.engine.dispose()


def _cli(env_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"INFERENCE_FARM_DATABASE_URL": env_url, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "inference_farm", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_db_upgrade_twice_on_postgres(fresh_postgres: str) -> None:
    first = _cli(fresh_postgres, "db", "upgrade")
    second = _cli(fresh_postgres, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert f"is at revision {head_revision()}" in second.stdout


def test_cli_on_unmigrated_database_prints_one_line_hint(fresh_postgres: str) -> None:
    result = _cli(fresh_postgres, "keys", "create", "--name", "k", "--scope", "admin")
    assert result.returncode == 4
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert "not migrated: run `inference-farm db upgrade`" in result.stderr
    assert "Traceback" not in result.stderr
