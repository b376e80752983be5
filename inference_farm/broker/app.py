"""The Celery app of the farm; the only `celery -A` target."""

from __future__ import annotations

import logging
import sys
from typing import Any

from celery import Celery, signals

from inference_farm.broker.config import build
from inference_farm.errors import SettingsError
from inference_farm.settings import Settings, get_settings

log = logging.getLogger(__name__)

# What a worker imports at start: the tasks, and its metrics and heartbeat hooks.
WORKER_MODULES = ["inference_farm.worker.tasks", "inference_farm.worker.hooks"]
NO_BROKER = (
    "no broker configured: set INFERENCE_FARM_BROKER_URL, "
    "or run `inference-farm up`, which starts its own Redis"
)


def create_celery(settings: Settings | None = None) -> Celery:
    """A Celery app configured from settings (default: the process settings)."""
    settings = settings or get_settings()
    if not settings.broker_url:
        raise SettingsError(NO_BROKER)
    celery = Celery("inference_farm", include=WORKER_MODULES)
    celery.conf.update(build(settings))
    celery.conf.farm_settings = settings
    return celery


@signals.setup_logging.connect
def _setup_logging(**_kwargs: Any) -> None:
    from inference_farm.telemetry.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)


def __getattr__(name: str) -> Any:
    # `celery -A inference_farm.broker.app` looks up `app`; build it on first use only,
    # so importing this module never needs a broker.
    if name in ("app", "celery"):
        try:
            value = create_celery()
        except SettingsError as exc:
            # `celery -A` would bury the reason under its own traceback.
            sys.stderr.write(f"error: {exc}\n")
            raise SystemExit(3) from None
        globals()["app"] = globals()["celery"] = value
        return value
    raise AttributeError(name)
