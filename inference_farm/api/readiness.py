"""Readiness checks of the farm's dependencies: the registry database and Redis."""

from __future__ import annotations

from dataclasses import dataclass, field

from inference_farm.broker.connections import check_redis
from inference_farm.errors import FarmError
from inference_farm.registry import Database
from inference_farm.registry.migrate import ensure_current


@dataclass
class Readiness:
    """The outcome of each check: "ok" or a message saying what is wrong."""

    checks: dict[str, str] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        """True when every check passed."""
        return all(value == "ok" for value in self.checks.values())

    @property
    def problems(self) -> str:
        """The failed checks, joined into one message."""
        return "; ".join(f"{k}: {v}" for k, v in self.checks.items() if v != "ok")


def check_database(database: Database) -> str:
    """ "ok" when the registry answers and is migrated, else why not."""
    try:
        ensure_current(database)
    except FarmError as exc:
        return exc.message
    return "ok"


def readiness(database: Database, broker_url: str, backend_url: str, timeout: float) -> Readiness:
    """Check the database, the broker and (when distinct) the result backend."""
    result = Readiness()
    result.checks["database"] = check_database(database)
    result.checks["broker"] = check_redis(broker_url, timeout)
    if backend_url != broker_url:
        result.checks["result_backend"] = check_redis(backend_url, timeout)
    return result
