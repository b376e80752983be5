"""Redis clients of the farm's broker URLs, and whether a Redis answers."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

from inference_farm.settings import hide_password


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
