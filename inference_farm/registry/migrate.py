"""Alembic migrations: apply them, and check that a database is at the head revision."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from inference_farm.errors import SchemaNotReady, SettingsError, Unavailable
from inference_farm.registry.db import Database

UPGRADE_HINT = "run `inference-farm db upgrade`"


def migrations_dir() -> Path:
    """The Alembic script folder: packaged inside the wheel, or at the repository root."""
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "_migrations", package.parent / "migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise SettingsError("cannot find the migrations folder of inference-farm")


def alembic_config(url: str) -> Config:
    """An Alembic config for url; env.py takes the URL from its attributes."""
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.attributes["url"] = url
    return config


@lru_cache(maxsize=1)
def head_revision() -> str | None:
    """The newest revision the code expects."""
    return ScriptDirectory.from_config(alembic_config("")).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(database: Database, revision: str = "head") -> None:
    """Apply migrations up to revision; a no-op when already there."""
    config = alembic_config(database.url)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(database: Database, revision: str) -> None:
    """Revert migrations down to revision."""
    config = alembic_config(database.url)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def ensure_current(database: Database) -> None:
    """Raise SchemaNotReady unless the database is at the head revision."""
    try:
        current = current_revision(database.engine)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", exc) or exc).strip().splitlines()[0]
        raise Unavailable(f"cannot reach the database {database.safe_url}: {reason}") from None
    head = head_revision()
    if current == head:
        return
    if current is None:
        raise SchemaNotReady(f"the database {database.safe_url} is not migrated: {UPGRADE_HINT}")
    raise SchemaNotReady(
        f"the database {database.safe_url} is at revision {current}, "
        f"the code expects {head}: {UPGRADE_HINT}"
    )
