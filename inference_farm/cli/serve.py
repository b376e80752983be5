"""Run one service in this process: the API under gunicorn, a Celery worker, or Flower."""

from __future__ import annotations

import logging
import os
from typing import Any

from gunicorn.app.base import BaseApplication

from inference_farm.broker import control
from inference_farm.broker.app import create_celery
from inference_farm.broker.connections import check_redis
from inference_farm.broker.names import ALL_MODELS_SETTING, CONTROL_QUEUE, model_queue
from inference_farm.errors import SettingsError, Unavailable
from inference_farm.registry import Database
from inference_farm.registry.migrate import ensure_current
from inference_farm.settings import Settings
from inference_farm.telemetry import multiproc

log = logging.getLogger(__name__)


def check_registry(settings: Settings) -> None:
    """Fail fast, with one clear line, when the registry is unreachable or not migrated."""
    database = Database(settings.effective_database_url)
    try:
        ensure_current(database)
    finally:
        database.engine.dispose()


class _Gunicorn(BaseApplication):
    """gunicorn running the farm's ASGI app factory in each worker process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options: dict[str, Any] = {
            "bind": f"{s.api_host}:{s.api_port}",
            "workers": s.api_workers,
            "worker_class": "inference_farm.api.wire.FarmWorker",
            "graceful_timeout": 10,
            "loglevel": s.log_level.lower(),
            "accesslog": None,
            "proc_name": "inference-farm-api",
            "child_exit": _child_exit,
        }
        if s.tls_cert and s.tls_key:
            options.update(certfile=str(s.tls_cert), keyfile=str(s.tls_key))
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from inference_farm.api.asgi import create_asgi

        return create_asgi(self.settings)


def _child_exit(_server: Any, worker: Any) -> None:
    multiproc.mark_dead(worker.pid)


def run_api(settings: Settings) -> None:
    """Serve the REST API with gunicorn (HTTPS when a certificate is set) until stopped."""
    create_celery(settings)  # fails early when no broker is configured
    multiproc.prepare("api")  # before the app loads prometheus_client
    for path in (settings.tls_cert, settings.tls_key):
        if path is not None and not path.is_file():
            raise SettingsError(f"the TLS file {path} does not exist")
    check_registry(settings)
    _Gunicorn(settings).run()


def worker_queues(settings: Settings, models: list[str], all_models: bool) -> list[str]:
    """The queues a worker consumes: control, plus the named (or every registered) model."""
    from inference_farm.registry import catalog

    if all_models:
        database = Database(settings.effective_database_url)
        try:
            models = [model.name for model in catalog.list_models(database.session())]
        finally:
            database.remove()
            database.engine.dispose()
    return [CONTROL_QUEUE, *(model_queue(catalog.check_name(name)) for name in models)]


def run_worker(
    settings: Settings, models: list[str] | None = None, all_models: bool = False
) -> None:
    """Run a Celery worker on the control queue and the given models' queues until stopped."""
    from inference_farm.runtime.sessions import check_device, prime

    celery = create_celery(settings)
    check_device(settings.worker_device)
    prime(settings.worker_device, settings.intra_op_threads)
    check_registry(settings)
    celery.conf[ALL_MODELS_SETTING] = all_models
    queues = worker_queues(settings, models or [], all_models)
    multiproc.prepare("worker")  # before the tasks load prometheus_client
    # Threads, not prefork: one session cache per worker, which control commands can reach;
    # coalesced inference runs on the consumer's thread (worker_pool.py).
    celery.conf.worker_pool = "inference_farm.worker.thread_pool:TaskPool"
    argv = ["worker", "--concurrency", str(_concurrency(settings))]
    argv += ["--queues", ",".join(queues), "--loglevel", settings.log_level]
    argv += ["--hostname", f"farm-{os.getpid()}@%h", "--without-mingle"]
    if settings.task_events:
        argv.append("--task-events")
    celery.worker_main(argv)


def _concurrency(settings: Settings) -> int:
    return settings.worker_concurrency or os.cpu_count() or 1


def run_flower(settings: Settings) -> None:
    """Run Flower against the farm's broker until stopped; Unavailable if it does not answer."""
    celery = create_celery(settings)
    broker = check_redis(settings.broker_url or "", settings.health_timeout)
    if broker != "ok":
        raise Unavailable(f"Flower needs the broker, and it does not answer: {broker}")
    argv = ["flower", f"--port={settings.flower_port}", f"--address={settings.api_host}"]
    if settings.flower_basic_auth:
        argv.append(f"--basic_auth={settings.flower_basic_auth}")
    # Flower turns task events on every few seconds; once now, so it sees the next job.
    control.call(celery, "enable_events")
    celery.start(argv)
