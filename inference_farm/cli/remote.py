"""`inference-farm` commands that talk to the REST API: models, infer, submit, jobs."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

# The CLI fails fast on an unreachable API instead of using the client's full retry budget.
CLI_RETRY_BUDGET = 5.0
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "expired")


def _client(ctx: click.Context) -> Any:
    from inference_farm.client import Client

    # Someone is waiting at the terminal: a few seconds of retries, not the library's 30.
    return Client(ctx.obj["url"], ctx.obj["api_key"], retry_budget=CLI_RETRY_BUDGET)


def api_client(ctx: click.Context) -> Any:
    """The farm's Client on --url and --api-key, for commands defined outside this module."""
    return _client(ctx)


def _remember(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    ctx.ensure_object(dict)[param.name] = value
    return value


def api_options(command: Any) -> Any:
    """Add --url and --api-key (env INFERENCE_FARM_URL, INFERENCE_FARM_API_KEY) for _client."""
    for name, envvar, text in [("--api-key", "INFERENCE_FARM_API_KEY", "API key"),
                               ("--url", "INFERENCE_FARM_URL", "API URL")]:  # fmt: skip
        command = click.option(
            name, envvar=envvar, expose_value=False, callback=_remember,
            help=f"{text} [env {envvar}].",
        )(command)  # fmt: skip
    return command


@click.group()
@api_options
def models() -> None:
    """Upload, list, show and delete models through the API."""


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


@models.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Model name.")
@click.option("--version", help="Semantic version; default: next patch.")
@click.option("--description", default="", help="What this version is.")
@click.option(
    "--warmup",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Sample inputs (.npz, or an OIP JSON request): checked, and run before serving.",
)
@click.option("--model-file", help="The .onnx member of an archive that holds several.")
@click.option("--wait", is_flag=True, help="Wait until validation ends; fail if it fails.")
@click.option("--json", "as_json", is_flag=True, help="Print the version record as JSON.")
@click.pass_context
def models_upload(
    ctx: click.Context, file: Path, name: str, version: str | None, description: str,
    warmup: Path | None, model_file: str | None, wait: bool, as_json: bool,
) -> None:  # fmt: skip
    """Upload FILE (.onnx, or a .zip / .tar[.gz] of one with its data) as a version of NAME."""
    client = _client(ctx)
    with click.progressbar(length=file.stat().st_size, label="uploading", file=sys.stderr) as bar:
        record = client.models.upload(
            file, name, version, description, progress=bar.update, warmup=warmup,
            model_file=model_file,
        )  # fmt: skip
    if wait:
        record = _wait_with_spinner(client, name, record["version"])
    if as_json:
        echo_json(record)
    else:
        click.echo(f"{record['model']} {record['version']}: {record['status']}")
        for warning in record.get("warnings") or []:
            click.echo(f"warning: {warning}", err=True)
    if record["status"] == "failed":
        raise click.ClickException(f"validation failed: {record['error']}")


def _spin(label: str, finished: Any, timeout: float) -> None:
    """Show a spinner on stderr until finished() is true or timeout seconds pass."""
    frames, started = itertools.cycle("|/-\\"), time.monotonic()
    while not finished() and time.monotonic() - started < timeout:
        elapsed = time.monotonic() - started
        click.echo(f"\r{label} {next(frames)} {elapsed:.0f}s", nl=False, err=True)
        time.sleep(0.3)
    click.echo("\r" + " " * 40 + "\r", nl=False, err=True)


def _wait_with_spinner(client: Any, name: str, version: str) -> dict:
    def validated() -> bool:
        return client.models.get_version(name, version)["status"] != "pending"

    _spin("validating", validated, timeout=3600)
    return client.models.get_version(name, version)


def _wait_for_job(job: Any, timeout: float) -> dict[str, Any]:
    """The job's outputs, with a spinner while it is queued or running."""
    _spin("waiting for job", lambda: job.status() not in ("queued", "running"), timeout)
    return job.result(timeout=timeout)


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def models_list(ctx: click.Context, as_json: bool) -> None:
    """List models with their serving version."""
    listed = _client(ctx).models.list()
    if as_json:
        echo_json(listed)
        return
    for model in listed:
        versions = ", ".join(f"{v['version']} ({v['status']})" for v in model["versions"])
        click.echo(f"{model['name']}\tserving {model['serving_version'] or '-'}\t{versions}")


@models.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def models_show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show a model and each of its versions."""
    client = _client(ctx)
    model = client.models.get(name)
    records = [client.models.get_version(name, v["version"]) for v in model["versions"]]
    if as_json:
        echo_json({**model, "versions": records})
        return
    click.echo(f"{model['name']}: {model['description'] or '(no description)'}")
    click.echo(
        f"serving {model['serving_version'] or '-'}; pinned {model['default_version'] or '-'}"
    )
    for record in records:
        line = f"  {record['version']}  {record['status']}"
        click.echo(line + (f"  {record['error']}" if record["error"] else ""))


@models.command("delete")
@click.argument("name")
@click.option("--version", help="Retire only this version.")
@click.pass_context
def models_delete(ctx: click.Context, name: str, version: str | None) -> None:
    """Delete a model, or retire one version of it."""
    _client(ctx).models.delete(name, version)
    click.echo(f"deleted {name}" + (f" {version}" if version else ""))


def _inputs(specs: tuple[str, ...]) -> dict[str, Any]:
    from inference_farm.client.tensors import read_input

    arrays: dict[str, Any] = {}
    for spec in specs:
        try:
            arrays.update(read_input(spec))
        except ValueError as exc:
            error = click.ClickException(str(exc))
            error.exit_code = 2  # bad input, as for the API's 400
            raise error from None
    return arrays


def _show(outputs: dict[str, Any], path: Path | None, as_json: bool) -> None:
    """Write outputs to an .npz at path, and/or print them: JSON, or one line per output."""
    from inference_farm.client.tensors import outputs_to_json, write_npz

    if path is not None:
        try:
            write_npz(outputs, path)
        except OSError as exc:
            raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None
    shown = outputs_to_json(outputs)
    if as_json:
        echo_json(shown)
        return
    for name, value in shown.items():
        where = f"in {path}" if path else json.dumps(value["data"])
        click.echo(f"{name} {value.get('datatype', 'JSON')} {value['shape']}: {where}")


SECONDS = click.FloatRange(min=0, min_open=True)
AS_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
OUTPUT = click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
                      help="Save the outputs to this .npz file.")  # fmt: skip
VERSION = click.option("--version", help="Model version; default: the one served by default.")
INPUTS = click.option(
    "--input", "specs", multiple=True, required=True, metavar="NAME=FILE",
    help="Input from .npy, .npz (key NAME) or .json; FILE.npz alone gives all its arrays.",
)  # fmt: skip


def tensor_io(command: Any) -> Any:
    """The MODEL argument and the input, version and output options of infer and submit."""
    for decorate in (AS_JSON, OUTPUT, VERSION, INPUTS, click.argument("model")):
        command = decorate(command)
    return command


def _grpc_client(ctx: click.Context, address: str) -> Any:
    """A GrpcClient on address, else the default (INFERENCE_FARM_GRPC_URL, or --url's host)."""
    from inference_farm.client.grpc_client import GrpcClient, default_address

    try:
        return GrpcClient(address or default_address(ctx.obj["url"]), ctx.obj["api_key"],
                          retry_budget=CLI_RETRY_BUDGET)  # fmt: skip
    except ImportError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@tensor_io
@click.option("--timeout", type=SECONDS, help="Seconds to wait for the answer.")
@click.option(
    "--grpc", "grpc_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
    help="Over gRPC, at ADDRESS (host:port, grpcs://host:port) or else at "
    "INFERENCE_FARM_GRPC_URL or the --url host on port 8001.",
)  # fmt: skip
@api_options
@click.pass_context
def infer(
    ctx: click.Context, model: str, specs: tuple[str, ...], output: Path | None, as_json: bool,
    version: str | None, timeout: float | None, grpc_address: str | None,
) -> None:  # fmt: skip
    """Run MODEL on the inputs and wait for its outputs."""
    inputs = _inputs(specs)
    client = _client(ctx) if grpc_address is None else _grpc_client(ctx, grpc_address)
    with client:
        outputs = client.infer(model, inputs, version=version, timeout=timeout)
    _show(outputs, output, as_json)


@click.command()
@tensor_io
@click.option("--priority", type=click.IntRange(0, 9), help="0-9, 9 first  [default: 4]")
@click.option("--timeout", type=SECONDS, help="Seconds before the job expires unrun.")
@click.option("--wait", is_flag=True, help="Wait for the result (up to --timeout, or 300s).")
@api_options
@click.pass_context
def submit(
    ctx: click.Context, model: str, specs: tuple[str, ...], output: Path | None, as_json: bool,
    version: str | None, priority: int | None, timeout: float | None, wait: bool,
) -> None:  # fmt: skip
    """Queue a job for MODEL and print its id, or its outputs with --wait."""
    job = _client(ctx).submit(model, _inputs(specs), version, priority=priority, timeout=timeout)
    if wait:
        # A moment past its deadline, so that it reads as expired rather than as a wait cut short.
        _show(_wait_for_job(job, timeout + 10 if timeout else 300.0), output, as_json)
    else:
        click.echo(json.dumps({"job_id": job.id}) if as_json else job.id)


@click.group()
@api_options
def jobs() -> None:
    """Show, wait for, cancel and list jobs through the API."""


def _job_line(job: dict[str, Any]) -> str:
    error = f"\t{job['error']}" if job["error"] else ""
    return (f"{job['job_id']}\t{job['status']}\t{job['model']} {job['version'] or '-'}\t"
            f"{job['created_at']}{error}")  # fmt: skip


@jobs.command("get")
@click.argument("job_id")
@AS_JSON
@click.pass_context
def jobs_get(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Show a job: status, model, when it was submitted, error."""
    job = _client(ctx).job(job_id).info()
    click.echo(json.dumps(job, indent=2) if as_json else _job_line(job))


@jobs.command("wait")
@click.argument("job_id")
@click.option("--timeout", type=SECONDS, default=300.0, show_default=True, help="Seconds.")
@OUTPUT
@AS_JSON
@click.pass_context
def jobs_wait(
    ctx: click.Context, job_id: str, timeout: float, output: Path | None, as_json: bool
) -> None:
    """Wait for a job and show its outputs; fail if it fails, is cancelled or expires."""
    _show(_wait_for_job(_client(ctx).job(job_id), timeout), output, as_json)


@jobs.command("cancel")
@click.argument("job_id")
@click.pass_context
def jobs_cancel(ctx: click.Context, job_id: str) -> None:
    """Cancel a job: a queued one never runs, a running one's result is discarded."""
    _client(ctx).job(job_id).cancel()
    click.echo(f"cancelled job {job_id}")


@jobs.command("list")
@click.option("--status", type=click.Choice(JOB_STATUSES), help="Only jobs in this status.")
@click.option("--model", help="Only jobs of this model.")
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@AS_JSON
@click.pass_context
def jobs_list(
    ctx: click.Context, status: str | None, model: str | None, limit: int, as_json: bool
) -> None:
    """List jobs, newest first."""
    listed = _client(ctx).jobs(status=status, model=model, limit=limit)
    if as_json:
        echo_json(listed)
        return
    for job in listed["jobs"]:
        click.echo(_job_line(job))


def _overview(client: Any) -> dict[str, Any]:
    """What `status` shows: readiness, workers, models, recent failures."""
    failed = client.jobs(status="failed", limit=5)["jobs"]
    return {
        "health": client.health(),
        "workers": client.workers(),
        "models": client.models.list(),
        "recent_failures": failed,
    }


def _heard(worker: dict[str, Any]) -> str:
    """How long ago the worker's last heartbeat was, as `heartbeat 3s ago`."""
    if not worker.get("last_heartbeat"):
        return "no heartbeat"
    moment = dt.datetime.fromisoformat(worker["last_heartbeat"])
    age = (dt.datetime.now(dt.timezone.utc) - moment).total_seconds()
    return f"heartbeat {max(age, 0):.0f}s ago"


def _worker_line(worker: dict[str, Any]) -> str:
    """One worker: hostname, device, queues, loaded sessions with their memory, heartbeat."""
    queues = ", ".join(f"{q['name']} ({q['depth']} waiting)" for q in worker["queues"]) or "-"
    loaded = ", ".join(
        f"{s['name']} {s['version']} ({s['bytes'] / 2**20:.1f} MiB)" for s in worker["sessions"]
    )
    return (
        f"{worker['hostname']} [{worker['device']}] queues: {queues}; loaded: {loaded or '-'}; "
        f"{_heard(worker)}"
    )


def _print_overview(view: dict[str, Any]) -> None:
    health = view["health"]
    checks = ", ".join(f"{k} {v}" for k, v in health.get("checks", {}).items())
    click.echo(f"farm: {'ready' if health['ready'] else 'NOT READY'} ({checks})")
    click.echo(f"workers: {len(view['workers'])}")
    for worker in view["workers"]:
        click.echo("  " + _worker_line(worker))
    click.echo(f"models: {len(view['models'])}")
    for model in view["models"]:
        states = ", ".join(f"{v['version']} {v['status']}" for v in model["versions"]) or "-"
        click.echo(f"  {model['name']}: serving {model['serving_version'] or '-'} ({states})")
    if view["recent_failures"]:
        click.echo("recent failures:")
        for job in view["recent_failures"]:
            click.echo(f"  {job['job_id']} {job['model']} {job['version']}: {job['error']}")


@click.command()
@AS_JSON
@click.option("--watch", type=SECONDS, is_flag=False, flag_value=2.0,
              help="Refresh every N seconds (default 2) until Ctrl-C.")  # fmt: skip
@api_options
@click.pass_context
def status(ctx: click.Context, as_json: bool, watch: float | None) -> None:
    """The live farm at a glance: readiness, workers and queues, models, recent failures."""
    client = _client(ctx)
    while True:
        view = _overview(client)
        if as_json:
            echo_json(view)
        else:
            if watch:
                click.clear()
            _print_overview(view)
        if not watch:
            return
        time.sleep(watch)
