"""The `inference-farm` command line: thin click commands over the farm's core."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import click

from inference_farm.cli import remote as cli_api
from inference_farm.cli.remote import echo_json
from inference_farm.client import FarmClientError
from inference_farm.errors import FarmError, InvalidInput, NotFound, SettingsError, Unavailable
from inference_farm.settings import Settings, get_settings

# One exit code per class of error, so scripts can tell them apart (2 is click's usage error).
EXIT_CODES: list[tuple[type[FarmError], int]] = [
    (InvalidInput, 2),
    (NotFound, 5),
    (SettingsError, 3),
    (Unavailable, 4),
]


def _settings() -> Settings:
    from inference_farm.telemetry.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return settings


@click.group()
@click.version_option(package_name="inference-farm")
def cli() -> None:
    """inference-farm: serve ONNX models from a farm of Celery workers."""


@cli.command()
@click.option("--flower", is_flag=True, help="Also run Flower.")
def up(flower: bool) -> None:
    """Run the whole farm on this machine: Redis, migrations, API, a worker."""
    from inference_farm.cli.up import run_up

    sys.exit(run_up(_settings(), flower=flower))


@cli.command()
def api() -> None:
    """Run the REST API (gunicorn running uvicorn) against the configured registry and Redis."""
    from inference_farm.cli.serve import run_api

    run_api(_settings())


@cli.command()
@click.option("--models", help="Comma-separated models whose queues this worker serves.")
@click.option("--all-models", is_flag=True, help="Serve every model, including later ones.")
@click.option(
    "--pool",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A pool file (workers/*.yaml): models, device, concurrency, cache.",
)
def worker(models: str | None, all_models: bool, pool: Path | None) -> None:
    """Run a Celery worker of the farm: the control queue plus model queues."""
    from inference_farm.cli.serve import run_worker
    from inference_farm.settings import load_settings
    from inference_farm.worker.pool_files import load_pool

    settings = _settings()
    names = [name.strip() for name in models.split(",") if name.strip()] if models else []
    if pool is not None:
        if names or all_models:
            raise click.UsageError("--pool names the models itself: drop --models/--all-models")
        definition = load_pool(pool)
        settings = load_settings(**definition.overrides)
        names, all_models = definition.models or [], definition.models is None
    if not names and not all_models:
        raise click.UsageError("name the models to serve: --models a,b, --all-models or --pool")
    run_worker(settings, names, all_models)


@cli.command()
def flower() -> None:
    """Run Flower, Celery's monitor, against the farm's broker."""
    from inference_farm.cli.serve import run_flower

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
    """API keys, managed directly in the registry; `keys me` asks the API."""


@keys.command("create")
@click.option("--name", required=True, help="Who or what the key is for.")
@click.option("--scope", "scopes", multiple=True, required=True, help="Repeat for each scope.")
@click.option("--model", "models", multiple=True, help="Allow only these models (repeatable).")
@click.option("--expires-in-days", type=click.IntRange(min=1), help="Expire after N days.")
def keys_create(
    name: str, scopes: tuple[str, ...], models: tuple[str, ...], expires_in_days: int | None
) -> None:
    """Create a key and print its secret, once, as the only line on stdout."""
    from inference_farm.registry.db import utcnow
    from inference_farm.registry.keys import create_key

    database = _registry()
    expires = utcnow() + dt.timedelta(days=expires_in_days) if expires_in_days else None
    created = create_key(database.session(), name, list(scopes), list(models) or None, expires)
    click.echo(created.secret)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_list(as_json: bool) -> None:
    """List keys: prefix, name, scopes, state; never secrets."""
    from sqlalchemy import select

    from inference_farm.registry.models import ApiKey

    database = _registry()
    rows = [_key_row(key) for key in database.session().scalars(select(ApiKey).order_by(ApiKey.id))]
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        click.echo(f"{row['id']}\tifk_{row['prefix']}_…\t{row['name']}\t"
                   f"{','.join(row['scopes'])}\t{row['state']}")  # fmt: skip


@keys.command("revoke")
@click.argument("key_id", type=int)
def keys_revoke(key_id: int) -> None:
    """Revoke key KEY_ID: it stops working at once."""
    from inference_farm.registry.keys import revoke_key

    key = revoke_key(_registry().session(), key_id)
    click.echo(f"revoked key {key_id} (ifk_{key.prefix}_…)")


@keys.command("me")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@cli_api.api_options
@click.pass_context
def keys_me(ctx: click.Context, as_json: bool) -> None:
    """Show the key in use, through the API: name, prefix, scopes, models, expiry, limits."""
    key = cli_api.api_client(ctx).keys.me()
    if as_json:
        echo_json(key)
        return
    for field in ("name", "prefix", "scopes", "models", "expires_at", "rate_per_second",
                  "burst", "max_queued_jobs"):  # fmt: skip
        value = key.get(field)
        shown = ",".join(value) if isinstance(value, list) else value
        click.echo(f"{field}\t{'-' if shown is None else shown}")


def _registry() -> Any:
    from inference_farm.registry import Database
    from inference_farm.registry.migrate import ensure_current

    database = Database(_settings().effective_database_url)
    ensure_current(database)
    return database


def _key_row(key: Any) -> dict[str, Any]:
    from inference_farm.registry.db import utcnow

    state = "revoked" if key.revoked_at else "active"
    if state == "active" and key.expires_at and key.expires_at <= utcnow():
        state = "expired"
    return {
        "id": key.id, "name": key.name, "prefix": key.prefix, "scopes": key.scopes,
        "models": key.models, "state": state, "expires_at": key.expires_at,
        "last_used_at": key.last_used_at,
    }  # fmt: skip


for command in (cli_api.models, cli_api.infer, cli_api.submit, cli_api.jobs, cli_api.status):
    cli.add_command(command)


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
    except FarmClientError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(_client_exit_code(exc.status))


def _client_exit_code(status: int) -> int:
    if status in (0, 502, 503, 504):
        return 4
    if status == 404:
        return 5
    if status in (401, 403):
        return 6
    return 2 if 400 <= status < 500 else 1
