"""What every request handler of the API reaches: the Farm of the current app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from celery import Celery
from flask import current_app

from inference_farm.api.coalescer import Coalescer
from inference_farm.api.ratelimit import Limiter
from inference_farm.broker.queues import QueueWatch
from inference_farm.registry import Database
from inference_farm.registry.cached import RegistryCache
from inference_farm.settings import Settings
from inference_farm.storage import ArtifactStore


@dataclass
class Farm:
    """What every request handler needs: settings, registry and Celery app."""

    settings: Settings
    db: Database
    celery: Celery
    store: ArtifactStore
    queues: QueueWatch
    limiter: Limiter
    registry: RegistryCache
    coalescer: Coalescer
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        """Stop the background threads this app started and close its database pool."""
        for closer in self.closers:
            closer()
        self.queues.close()
        self.coalescer.close()
        self.db.engine.dispose()


def farm() -> Farm:
    """The Farm of the current Flask app."""
    return current_app.extensions["farm"]
