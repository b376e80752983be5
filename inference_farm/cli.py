"""The `inference-farm` command line: thin click commands over the farm's core."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any

import click

from inference_farm.errors import FarmError, InvalidInput, SettingsError, Unavailable
from inference_farm.settings import Settings, get_settings

# One exit code per class of error, so scripts can tell them apart (2 is click's usage error).
EXIT_CODES: list[tuple[type[FarmError], int]] = [
    (InvalidInput, 2),
    (SettingsError, 3),
    (Unavailable, 4),
]


def _settings() -> Settings:
    from inference_farm.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level)
    return settings


@click.group()
@click.version_option(package_name="inference-farm")
def cli() -> None:
    """inference-farm: serve ONNX models from a farm of Celery workers."""


@cli.command()
@click.option("--flower", is_flag=True, help="Also run Flower.")
def up(flower: bool) -> None:
    """Run the whole farm on this machine: Redis, migrations, API, a worker."""
    from inference_farm.up import run_up

    sys.exit(run_up(_settings(), flower=flower))


@cli.command()
def api() -> None:
    """Run the REST API (gunicorn) against the configured registry and Redis."""
    from inference_farm.services import run_api

    run_api(_settings())


@cli.command()
@click.option("--queues", "-Q", help="Comma-separated queues (default: farm.control).")
def worker(queues: str | None) -> None:
    """Run a Celery worker of the farm."""
    from inference_farm.services import run_worker

    run_worker(_settings(), queues.split(",") if queues else None)


@cli.command()
def flower() -> None:
    """Run Flower, Celery's monitor, against the farm's broker."""
    from inference_farm.services import run_flower

    run_flower(_settings())


@cli.group()
def db() -> None:
    """Registry database migrations."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Apply migrations; a second run is a no-op."""
    from inference_farm.registry import Database
    from inference_farm.registry.migrate import current_revision, upgrade

    database = Database(_settings().effective_database_url)
    upgrade(database, revision)
    click.echo(f"{database.safe_url} is at revision {current_revision(database.engine)}")


@cli.group()
def keys() -> None:
    """API keys, managed directly in the registry."""


@keys.command("create")
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option("--scope", "scopes", multiple=True, required=True, help="Repeat for each scope.")
@click.option("--model", "models", multiple=True, help="Allow only these models (repeatable).")
@click.option("--expires-in-days", type=click.IntRange(min=1), help="Expire after N days.")
def keys_create(
    name: str, scopes: tuple[str, ...], models: tuple[str, ...], expires_in_days: int | None
) -> None:
    """Create a key and print its secret, once, as the only line on stdout."""
    from inference_farm.registry import Database
    from inference_farm.registry.db import utcnow
    from inference_farm.registry.keys import create_key
    from inference_farm.registry.migrate import ensure_current

    database = Database(_settings().effective_database_url)
    ensure_current(database)
    expires = utcnow() + dt.timedelta(days=expires_in_days) if expires_in_days else None
    created = create_key(database.session(), name, list(scopes), list(models) or None, expires)
    click.echo(created.secret)


def _exit_code(error: FarmError) -> int:
    for kind, code in EXIT_CODES:
        if isinstance(error, kind):
            return code
    return 1


def main(argv: list[str] | None = None) -> Any:
    """Entry point: run the CLI, turning farm errors into one line on stderr."""
    try:
        return cli.main(args=argv, prog_name="inference-farm", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except FarmError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(_exit_code(exc))
