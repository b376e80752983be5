"""Run one service in this process: the API under gunicorn, a Celery worker, or Flower."""

from __future__ import annotations

import logging
import os
from typing import Any

from gunicorn.app.base import BaseApplication

from inference_farm.celery_app import CONTROL_QUEUE, create_celery
from inference_farm.registry import Database
from inference_farm.registry.migrate import ensure_current
from inference_farm.settings import Settings

log = logging.getLogger(__name__)


def check_registry(settings: Settings) -> None:
    """Fail fast, with one clear line, when the registry is unreachable or not migrated."""
    database = Database(settings.effective_database_url)
    try:
        ensure_current(database)
    finally:
        database.engine.dispose()


class _Gunicorn(BaseApplication):
    """gunicorn running the farm's app factory in each worker process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options: dict[str, Any] = {
            "bind": f"{s.api_host}:{s.api_port}",
            "workers": s.api_workers,
            "threads": s.api_threads,
            "worker_class": "gthread",
            "graceful_timeout": 10,
            "loglevel": s.log_level.lower(),
            "accesslog": None,
            "proc_name": "inference-farm-api",
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from inference_farm.api import create_app

        return create_app(self.settings)


def run_api(settings: Settings) -> None:
    """Serve the REST API with gunicorn until stopped."""
    create_celery(settings)  # fails early when no broker is configured
    check_registry(settings)
    _Gunicorn(settings).run()


def run_worker(settings: Settings, queues: list[str] | None = None) -> None:
    """Run a Celery worker on queues (default: the control queue) until stopped."""
    celery = create_celery(settings)
    check_registry(settings)
    queues = queues or [CONTROL_QUEUE]
    argv = ["worker", "--queues", ",".join(queues), "--loglevel", settings.log_level]
    argv += ["--hostname", f"farm-{os.getpid()}@%h", "--without-mingle", "--task-events"]
    celery.worker_main(argv)


def run_flower(settings: Settings) -> None:
    """Run Flower against the farm's broker until stopped."""
    celery = create_celery(settings)
    argv = ["flower", f"--port={settings.flower_port}", f"--address={settings.api_host}"]
    if settings.flower_basic_auth:
        argv.append(f"--basic_auth={settings.flower_basic_auth}")
    celery.start(argv)
