"""Celery settings of the farm, every value taken from inference_farm.settings."""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qs, urlsplit

from inference_farm.broker.names import CONTROL_QUEUE
from inference_farm.settings import Settings


def _verified_tls(url: str | None) -> dict[str, Any] | None:
    """TLS options for a rediss:// URL that names no ssl_cert_reqs: verify the server.

    redis-py verifies against the system's CAs (or the URL's ssl_ca_certs) by default; kombu
    would fall back to an unverified session and Celery's result backend would refuse the URL,
    so both are told to verify too. Options in the URL itself win over these.
    """
    if not url or urlsplit(url).scheme != "rediss":
        return None
    if "ssl_cert_reqs" in parse_qs(urlsplit(url).query):
        return None
    return {"ssl_cert_reqs": ssl.CERT_REQUIRED}


def build(settings: Settings) -> dict[str, Any]:
    """The Celery configuration for settings."""
    # One visibility timeout for broker and result backend, so neither redelivers early.
    transport = {"visibility_timeout": settings.visibility_timeout}
    # Priorities 0-9 on Redis (0 first), so interactive work overtakes bulk work. Unacked
    # jobs of a dead worker are looked for every unacked_restore_interval seconds: kombu
    # otherwise scans on only every tenth of its sweeps (measured: a job left by a killed
    # worker came back after 37 s, with a visibility timeout of 4 s).
    broker = {
        **transport,
        "priority_steps": list(range(10)),
        "sep": ":",
        "queue_order_strategy": "priority",
        "unacked_restore_interval": min(10, settings.visibility_timeout),
        "unacked_restore_throttle": 1,
    }
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.effective_result_backend,
        # JSON, and msgpack for coalesced jobs' raw tensor bytes: a message in any other
        # format is rejected, never unpickled.
        "task_serializer": "json",
        "result_serializer": "json",
        "event_serializer": "json",
        "accept_content": ["json", "msgpack"],
        "result_accept_content": ["json"],
        # A job is acknowledged after it ran, and requeued if its worker dies mid-job.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Inference jobs vary in length: reserving one at a time keeps idle workers fed.
        "worker_prefetch_multiplier": settings.worker_prefetch_multiplier,
        "worker_concurrency": settings.worker_concurrency,
        "task_track_started": True,
        # Task events cost a worker three publishes per job; Flower turns them on while it runs.
        "worker_send_task_events": settings.task_events,
        # No task-sent event: it doubles the cost of publishing a job (measured 1.35 ms
        # against 0.82 ms per send_task), and Flower sees each job from the worker's events.
        "task_send_sent_event": False,
        "result_expires": settings.result_expires,
        "result_extended": True,
        "broker_transport_options": broker,
        "result_backend_transport_options": transport,
        "broker_use_ssl": _verified_tls(settings.broker_url),
        "redis_backend_use_ssl": _verified_tls(settings.effective_result_backend),
        "broker_connection_retry_on_startup": True,
        "task_default_queue": CONTROL_QUEUE,
        "task_create_missing_queues": True,
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
        "enable_utc": True,
    }
