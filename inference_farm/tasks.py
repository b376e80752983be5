"""Thin Celery tasks over the registry and runtime."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from celery import current_app, shared_task, signals

from inference_farm.registry import Database
from inference_farm.registry.migrate import ensure_current

log = logging.getLogger(__name__)
_database: Database | None = None


def registry_db() -> Database:
    """The registry of this worker process, opened on first use."""
    global _database
    if _database is None:
        _database = Database(current_app.conf.farm_settings.effective_database_url)
    return _database


@signals.worker_process_init.connect
def _forget_parent_connections(**_kwargs: Any) -> None:
    # A forked child must never share the parent's pooled connections.
    global _database
    if _database is not None:
        _database.dispose()
        _database = None


@signals.task_postrun.connect
def _end_task_session(**_kwargs: Any) -> None:
    if _database is not None:
        _database.remove()


@shared_task(name="farm.ping")
def ping() -> dict[str, Any]:
    """Answer with this worker's identity once its registry is reachable and current."""
    ensure_current(registry_db())
    return {"hostname": socket.gethostname(), "pid": os.getpid()}
