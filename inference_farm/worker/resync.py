"""An all-models worker picks up the queues of models whose announcement it missed, and a
version becomes ready only once a live worker consumes its model's queue."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from inference_farm.broker import control, heartbeat
from inference_farm.broker.names import MODEL_ADDED_COMMAND, model_queue
from inference_farm.registry import Database, catalog

log = logging.getLogger(__name__)
SERVED_WAIT_S = 10.0  # how long a validation waits for an all-models worker to take a queue
POLL_S = 0.05


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
                control.call(app, "broadcast", MODEL_ADDED_COMMAND, **added)
                consumed.add(model_queue(name))
                log.info("now consuming %s, whose announcement this worker missed", name)
        except Exception as exc:  # the registry or broker is down: try again next time
            log.warning("could not compare the registry with this worker's queues: %s", exc)


def wait_served(app: Any, client: Any, name: str, timeout: float = SERVED_WAIT_S) -> bool:
    """Return True once a live worker's heartbeat names the queue of model name.

    When no worker consumes it yet but an all-models worker lives, that worker is asked to
    take the queue (its announcement may have been missed) and this waits up to timeout.
    False at once when no live worker will take it: then requests truly get 503.
    """
    queue = model_queue(name)
    if heartbeat.serving(client, queue):
        return True
    recent = time.time() - heartbeat.FRESH_S
    beats = heartbeat.read_all(client).values()
    if not any(one.get("all_models") and float(one.get("at") or 0) >= recent for one in beats):
        return False
    control.call(app, "broadcast", MODEL_ADDED_COMMAND, arguments={"name": name})
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if heartbeat.serving(client, queue):
            return True
        time.sleep(POLL_S)
    log.warning("no worker took the queue %s within %.0f s", queue, timeout)
    return False
