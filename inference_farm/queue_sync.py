"""An all-models worker picks up the queues of models whose announcement it missed."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from inference_farm import control
from inference_farm.celery_app import model_queue
from inference_farm.registry import Database, catalog

log = logging.getLogger(__name__)


def start(app: Any, hostname: str, consumed: set[str]) -> threading.Thread:
    """Look for unconsumed models every worker_resync_seconds, for the life of the worker."""
    settings = app.conf.farm_settings
    database = Database(settings.effective_database_url)
    every = settings.worker_resync_seconds
    thread = threading.Thread(
        target=_loop, args=(app, database, hostname, consumed, every), name="queue-sync",
        daemon=True,
    )  # fmt: skip
    thread.start()
    return thread


def missing(database: Database, consumed: set[str]) -> list[str]:
    """Registered models whose queue is not among consumed."""
    try:
        names = [model.name for model in catalog.list_models(database.session())]
    finally:
        database.remove()
    return [name for name in names if model_queue(name) not in consumed]


def _loop(app: Any, database: Database, hostname: str, consumed: set[str], every: float) -> None:
    while True:
        time.sleep(every)
        try:
            for name in missing(database, consumed):
                # Through the control path, so the consumer changes in its own thread.
                added = {"arguments": {"name": name}, "destination": [hostname]}
                control.call(app, "broadcast", "farm_model_added", **added)
                consumed.add(model_queue(name))
                log.info("now consuming %s, whose announcement this worker missed", name)
        except Exception as exc:  # the registry or broker is down: try again next time
            log.warning("could not compare the registry with this worker's queues: %s", exc)
