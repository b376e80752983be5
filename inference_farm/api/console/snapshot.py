"""One snapshot of the farm for the event stream: readiness, workers, queue depths, jobs by
status, and the API's inference counters. Computed once per interval per API process."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import redis

from inference_farm.api.context import Farm
from inference_farm.api.readiness import readiness
from inference_farm.broker import heartbeat
from inference_farm.broker.names import model_queue
from inference_farm.errors import FarmError
from inference_farm.registry import catalog
from inference_farm.registry.jobs import count_by_status
from inference_farm.telemetry import metrics

log = logging.getLogger(__name__)
# Which scope a key needs to be sent each part of a snapshot; readiness goes to every key.
PART_SCOPES = {"workers": "models:read", "queues": "models:read", "jobs": "admin",
               "api": "metrics"}  # fmt: skip


def take(context: Farm) -> dict[str, Any]:
    """The farm as it is now; a part that cannot be read says why instead."""
    settings = context.settings
    state = readiness(
        context.db, settings.broker_url or "", settings.effective_result_backend or "",
        settings.health_timeout,
    )  # fmt: skip
    document: dict[str, Any] = {"at": time.time(), "ready": state.ready, "checks": state.checks}
    for part, read in (("workers", _workers), ("queues", _queues), ("jobs", _jobs)):
        try:
            document[part] = read(context)
        except (FarmError, redis.RedisError, OSError) as exc:
            document[part] = {"error": str(exc)}
        except Exception as exc:  # one unreadable part must not stop the stream
            log.warning("event stream: reading %s failed: %s", part, exc)
            document[part] = {"error": f"could not be read: {type(exc).__name__}"}
        finally:
            context.db.remove()
    document["api"] = metrics.infer_totals()
    return document


def _workers(context: Farm) -> list[dict[str, Any]]:
    now = time.time()
    listed = []
    for host, beat in sorted(heartbeat.read_all(context.queues.redis).items()):
        keep = ("pid", "device", "queues", "sessions", "loaded_bytes", "gpu_memory",
                "metrics_port", "cache")  # fmt: skip
        described = {"hostname": host, **{key: beat.get(key) for key in keep}}
        described["heartbeat_age_s"] = round(max(0.0, now - float(beat.get("at", now))), 1)
        listed.append(described)
    return listed


def _queues(context: Farm) -> dict[str, int]:
    names = [model.name for model in catalog.list_models(context.db.session())]
    return {name: context.queues.depth(model_queue(name)) for name in names}


def _jobs(context: Farm) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for kind, _model, status, n in count_by_status(context.db.session()):
        if kind == "infer":
            counts[status] += n
    return dict(counts)


def for_key(document: dict[str, Any], scopes: list[str]) -> dict[str, Any]:
    """The parts of a snapshot that a key with scopes may see."""
    admin = "admin" in scopes
    return {
        part: value for part, value in document.items()
        if part not in PART_SCOPES or admin or PART_SCOPES[part] in scopes
    }  # fmt: skip
