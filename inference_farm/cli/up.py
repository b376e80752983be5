"""`inference-farm up`: Redis, migrations, API, worker and optionally Flower on one machine."""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import time
from typing import Any

import click
import httpx

from inference_farm.cli.embedded_redis import free_port, redis_binary, redis_command, wait_for_redis
from inference_farm.cli.supervisor import Supervisor
from inference_farm.errors import Unavailable
from inference_farm.registry import Database
from inference_farm.registry.keys import create_key
from inference_farm.registry.migrate import upgrade
from inference_farm.settings import PREFIX, Settings

log = logging.getLogger(__name__)
READY_TIMEOUT_S = 90.0


def _child_env(settings: Settings, broker_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env[PREFIX + "BROKER_URL"] = broker_url
    env[PREFIX + "DATA_DIR"] = str(settings.data_dir.resolve())
    env[PREFIX + "DATABASE_URL"] = settings.effective_database_url
    return env


def _start_redis(supervisor: Supervisor, settings: Settings) -> str:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    argv = redis_command(redis_binary(), port, settings.data_dir / "redis")
    wait_for_redis(url, supervisor.start("redis", argv))
    return url


def _admin_key(settings: Settings) -> str:
    database = Database(settings.effective_database_url)
    try:
        upgrade(database)
        return create_key(database.session(), name="up admin", scopes=["admin"]).secret
    finally:
        database.remove()
        database.engine.dispose()


def wait_ready(supervisor: Supervisor, url: str, timeout: float = READY_TIMEOUT_S) -> None:
    """Return once the API at url is ready; Unavailable if a child exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not supervisor.stopping:
        gone = supervisor.exited()
        if gone:
            raise Unavailable(f"{gone[0]} exited with code {gone[1]} during start-up")
        try:
            if httpx.get(url + "/v2/health/ready", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    if not supervisor.stopping:
        raise Unavailable(f"the API at {url} was not ready within {timeout:.0f}s")


def _grpc_address(settings: Settings) -> str:
    """Where gRPC is served, or why it is not."""
    if not settings.grpc_port:
        return "off (grpc_port 0)"
    if importlib.util.find_spec("grpc") is None:
        return "off (pip install 'inference-farm[grpc]')"
    return f"{settings.api_host}:{settings.grpc_port}"


def _banner(settings: Settings, api_url: str, broker_url: str, key: str, flower: bool) -> None:
    lines = [
        "inference-farm is up",
        f"  API        {api_url}   (docs: {api_url}/docs)",
        f"  console    {api_url}/console/   (sign in with the admin key)",
        f"  readiness  {api_url}/v2/health/ready",
        f"  gRPC       {_grpc_address(settings)}",
        f"  broker     {broker_url}",
        f"  registry   {Database(settings.effective_database_url).safe_url}",
    ]
    if flower:
        lines.append(f"  Flower     http://{settings.api_host}:{settings.flower_port}")
    lines += [f"  admin key  {key}   (shown once; store it now)", "Press Ctrl-C to stop."]
    click.echo("\n".join(lines))


def run_up(settings: Settings, flower: bool = False) -> int:
    """Run the whole farm until Ctrl-C or SIGTERM; return the exit code."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    supervisor = Supervisor(env=dict(os.environ))

    def _stop(_signum: int, _frame: Any) -> None:
        supervisor.stopping = True

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        broker_url = settings.broker_url or _start_redis(supervisor, settings)
        supervisor.env = _child_env(settings, broker_url)
        key = _admin_key(settings)
        supervisor.start("api", supervisor.farm_command("api"))
        supervisor.start("worker", supervisor.farm_command("worker", "--all-models"))
        if flower:
            supervisor.start("flower", supervisor.farm_command("flower"))
        api_url = f"http://{settings.api_host}:{settings.api_port}"
        wait_ready(supervisor, api_url)
        if supervisor.stopping:
            return 0
        _banner(settings, api_url, broker_url, key, flower)
        return supervisor.watch()
    finally:
        click.echo("stopping inference-farm …", err=True)
        supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
