"""The worker's task pool: Celery's threads, except that coalesced inference runs inline.

A coalesced job is milliseconds of work. Handing it to a pool thread and its
acknowledgement back to the consumer's thread cost more than that on a small machine,
and the two threads then take turns at the GIL (measured on 2 cores: 1.6 against 2.3 ms
of worker CPU per job, and 2,000 against 1,650 requests/s). So farm.infer_batch runs on
the consumer's own thread, one job after another, while jobs, validations and control
commands keep the threads, which is what lets the worker answer `inspect` and run an
upload's validation while it serves.
"""

from __future__ import annotations

from typing import Any

from celery.concurrency.base import apply_target
from celery.concurrency.thread import TaskPool as ThreadPool

from inference_farm.broker.names import INFER_BATCH_TASK

INLINE_TASKS = frozenset({INFER_BATCH_TASK})


class TaskPool(ThreadPool):
    """Threads pool that runs the tasks in INLINE_TASKS in the calling (consumer) thread."""

    def on_apply(
        self,
        target: Any,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        callback: Any = None,
        accept_callback: Any = None,
        **options: Any,
    ) -> Any:
        """Run the task: inline when its name (the first argument) is in INLINE_TASKS."""
        if args and args[0] in INLINE_TASKS:
            apply_target(target, args, kwargs, callback, accept_callback)
            return None
        return super().on_apply(target, args, kwargs, callback, accept_callback, **options)
