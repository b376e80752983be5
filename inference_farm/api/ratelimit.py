"""Per-key rate limits kept in Redis, so that they hold across API processes and machines."""

from __future__ import annotations

import logging
import math
import time

from limits import RateLimitItemPerMinute, RateLimitItemPerSecond
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from inference_farm.errors import RateLimited
from inference_farm.registry.models import ApiKey
from inference_farm.settings import Settings
from inference_farm.telemetry import metrics

log = logging.getLogger(__name__)
NAMESPACE = "farm-key"


def _storage_url(broker_url: str) -> str:
    # limits names a Redis socket URL differently from kombu.
    return broker_url.replace("redis+socket://", "redis+unix://", 1)


class Limiter:
    """A key may make `rate` requests per second on average, and `burst` in any one second."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.storage = storage_from_string(_storage_url(settings.broker_url or "memory://"))
        self.strategy = MovingWindowRateLimiter(self.storage)

    def limits_of(self, key: ApiKey) -> tuple[float, int] | None:
        """(rate per second, burst) for key, or None when it is unlimited."""
        rate = key.rate_per_second or self.settings.rate_per_second
        if rate is None:
            return None
        burst = key.burst or self.settings.rate_burst or max(1, math.ceil(rate * 2))
        return rate, burst

    def hit(self, key: ApiKey) -> None:
        """Count one request of key; RateLimited with Retry-After when over a limit."""
        limits = self.limits_of(key)
        if limits is None:
            return
        rate, burst = limits
        items = [RateLimitItemPerSecond(burst), RateLimitItemPerMinute(math.ceil(rate * 60))]
        for item in items:
            try:
                allowed = self.strategy.hit(item, NAMESPACE, str(key.id))
            except Exception as exc:  # no Redis: the request fails further on anyway
                log.warning("rate limit storage unavailable: %s", exc)
                return
            if not allowed:
                metrics.rate_limited("key_rate")
                reset = self.strategy.get_window_stats(item, NAMESPACE, str(key.id)).reset_time
                error = RateLimited(
                    f"this key is over its rate limit ({rate:g} requests per second, "
                    f"{burst} in any one second)"
                )
                error.retry_after = max(1, math.ceil(reset - time.time()))
                raise error
