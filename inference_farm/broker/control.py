"""Broadcasts to the workers (control commands, inspect, ping), a few at a time per process.

Celery takes a broadcast's connection from kombu's broker pool, one pool per broker URL
for the whole process, and the mailbox then takes a producer from the producer pool,
which draws on that same pool. With broker_pool_limit broadcasts at once, each holds one
connection and waits for a second, forever; and the producer pool refuses outright
(LimitExceeded) once as many producers are out as it may hold. So a broadcast here runs
on a connection outside the pool, and no more than CONCURRENT of them run at once.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import Celery

CONCURRENT = 4  # well under kombu's default pool limit of 10, which job publishing shares
_slots = threading.BoundedSemaphore(CONCURRENT)


def call(celery: Celery, method: str, *args: Any, **options: Any) -> Any:
    """celery.control.<method>(*args, **options), on a connection outside the pool."""
    with _slots, celery.connection_for_write() as connection:
        return getattr(celery.control, method)(*args, connection=connection, **options)


def inspect(celery: Celery, method: str, timeout: float, limit: int | None = None) -> dict:
    """The workers' answers to celery.control.inspect().<method>(), by hostname."""
    with _slots, celery.connection_for_write() as connection:
        asked = celery.control.inspect(timeout=timeout, limit=limit, connection=connection)
        return getattr(asked, method)() or {}
