"""Celery settings of the farm: a shim over inference_farm.broker.config, for tools that
look for a top-level celeryconfig module."""

from inference_farm.broker.config import build
from inference_farm.broker.names import CONTROL_QUEUE, MODEL_QUEUE_PREFIX

__all__ = ["CONTROL_QUEUE", "MODEL_QUEUE_PREFIX", "build"]
