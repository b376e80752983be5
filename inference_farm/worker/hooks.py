"""Worker start-up and shutdown: metrics port, heartbeat, queue resync, request ids in logs."""

from __future__ import annotations

import os
from typing import Any

from celery import signals

from inference_farm.broker import heartbeat
from inference_farm.broker.connections import redis_client
from inference_farm.broker.names import ALL_MODELS_SETTING, INFER_TASK
from inference_farm.telemetry import multiproc, request_ids
from inference_farm.worker import metrics as worker_metrics
from inference_farm.worker import resync as queue_sync

_beating: dict[str, Any] = {}


@signals.worker_init.connect
def _configure(sender: Any = None, **_kwargs: Any) -> None:
    worker_metrics.configure(sender.app.conf.farm_settings.worker_device)


@signals.worker_ready.connect
def _ready(sender: Any = None, **_kwargs: Any) -> None:
    settings = sender.app.conf.farm_settings
    port = settings.worker_metrics_port
    serving = bool(port) and worker_metrics.serve(settings.api_host, port, settings.worker_device)
    info = {"pid": os.getpid(), "device": settings.worker_device}
    info["metrics_port"] = port if serving else None
    info["all_models"] = bool(sender.app.conf.get(ALL_MODELS_SETTING))
    client = redis_client(settings.broker_url or "", settings.health_timeout)
    _beating.update(client=client, hostname=sender.hostname)
    heartbeat.start(client, sender.hostname, info, lambda: _live(sender, settings.worker_device))
    if sender.app.conf.get(ALL_MODELS_SETTING):
        consumed = {queue.name for queue in sender.task_consumer.queues}
        queue_sync.start(sender.app, sender.hostname, consumed)


def _live(consumer: Any, device: str) -> dict[str, Any]:
    """What each heartbeat says of this worker now: queues, loaded sessions, GPU memory."""
    from inference_farm.worker.tasks import worker_state  # tasks registers on import

    report = worker_state().cache_report()
    sessions = [{k: s.get(k) for k in ("name", "version", "bytes")} for s in report["entries"]]
    return {
        "queues": _queues(consumer), "sessions": sessions,
        "loaded_bytes": sum(int(s["bytes"] or 0) for s in sessions),
        "cache": report["stats"], "gpu_memory": worker_metrics.gpu_memory(device),
    }  # fmt: skip


def _queues(consumer: Any) -> list[str]:
    """The queues consumer takes jobs from now (none while it reconnects)."""
    task_consumer = getattr(consumer, "task_consumer", None)
    return sorted(queue.name for queue in list(getattr(task_consumer, "queues", None) or []))


@signals.worker_shutdown.connect
def _shutdown(**_kwargs: Any) -> None:
    if _beating:
        heartbeat.stop(_beating["client"], _beating["hostname"])


@signals.worker_process_shutdown.connect
def _child_exit(pid: int | None = None, **_kwargs: Any) -> None:
    # A prefork child's live gauges (loaded bytes) must not outlive it.
    multiproc.mark_dead(pid or os.getpid())


@signals.task_prerun.connect
def _bind_request_id(task: Any = None, args: Any = None, **_kwargs: Any) -> None:
    if task is not None and task.name == INFER_TASK and args and isinstance(args[0], dict):
        request_ids.bind(args[0].get("request_id"))


@signals.task_postrun.connect
def _unbind_request_id(**_kwargs: Any) -> None:
    request_ids.bind(None)
