"""Readiness checks of the farm's dependencies: the registry database and Redis."""

from __future__ import annotations

from dataclasses import dataclass, field

import redis
import redis.asyncio as aioredis

from inference_farm.errors import FarmError
from inference_farm.registry import Database
from inference_farm.registry.migrate import ensure_current
from inference_farm.settings import hide_password


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


def _redis_py_url(url: str) -> str:
    # kombu's redis+socket:// is redis-py's unix://.
    if url.startswith("redis+socket://"):
        return "unix://" + url.removeprefix("redis+socket://")
    return url


def redis_client(url: str, timeout: float) -> redis.Redis:
    """A redis-py client for a Redis URL of the farm (redis+socket:// included)."""
    return redis.Redis.from_url(
        _redis_py_url(url), socket_timeout=timeout, socket_connect_timeout=timeout
    )


def async_redis_client(url: str, timeout: float) -> aioredis.Redis:
    """An asyncio redis-py client for a Redis URL of the farm, for the loop that uses it."""
    return aioredis.Redis.from_url(
        _redis_py_url(url), socket_timeout=timeout, socket_connect_timeout=timeout
    )


def check_redis(url: str, timeout: float) -> str:
    """ "ok" when the Redis at url answers PING within timeout, else why not."""
    client = redis_client(url, timeout)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"cannot reach {hide_password(url)}: {exc}"
    finally:
        client.close()
    return "ok"


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
