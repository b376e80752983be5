"""What the API knows of the queues: their depth in Redis, and which ones live workers serve."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import kombu.exceptions
import redis
from celery import Celery

from inference_farm.broker import control, heartbeat
from inference_farm.broker.connections import redis_client
from inference_farm.broker.publisher import priority_key
from inference_farm.errors import Unavailable

log = logging.getLogger(__name__)
PRIORITIES = range(1, 10)  # priority 0 uses the bare queue name; see celeryconfig
FULL_CHECK_S = 0.1  # how long a depth read serves the queue-full check, plus jobs sent since


class QueueWatch:
    """Queue depths read from Redis, and a cached view of the queues live workers consume."""

    def __init__(
        self, celery: Celery, broker_url: str, refresh_s: float = 3.0, timeout: float = 1.0
    ) -> None:
        self.celery, self.refresh_s, self.timeout = celery, refresh_s, timeout
        self.redis = redis_client(broker_url, timeout)
        self._consumed: set[str] | None = None
        self._fetched_at = 0.0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._recent: dict[str, tuple[float, int]] = {}  # queue: (read at, depth then + sent)

    def full(self, queue: str, limit: int) -> bool:
        """True when queue holds limit jobs or more; a read serves FULL_CHECK_S seconds,
        counting the jobs this process sent since, so a busy API reads Redis less often."""
        depth = self._recent_depth(queue)
        if depth is None:
            depth = self._remember(queue, self.depth(queue))
        return depth >= limit

    async def full_async(self, queue: str, limit: int, client: Any) -> bool:
        """full(), reading the depth with an asyncio Redis client."""
        depth = self._recent_depth(queue)
        if depth is None:
            depth = self._remember(queue, await self.depth_async(queue, client))
        return depth >= limit

    def _recent_depth(self, queue: str) -> int | None:
        read_at, depth = self._recent.get(queue, (0.0, 0))
        return depth if time.monotonic() - read_at <= FULL_CHECK_S else None

    def _remember(self, queue: str, depth: int) -> int:
        self._recent[queue] = (time.monotonic(), depth)
        return depth

    def sent(self, queue: str) -> None:
        """Count a job this process just sent to queue, for the queue-full check."""
        read_at, depth = self._recent.get(queue, (0.0, 0))
        self._recent[queue] = (read_at, depth + 1)

    def depth(self, queue: str) -> int:
        """Jobs waiting on queue, at every priority."""
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for name in _lists(queue):
                    pipe.llen(name)
                return sum(pipe.execute())
        except redis.RedisError as exc:
            raise _no_broker(exc) from None

    async def depth_async(self, queue: str, client: Any) -> int:
        """depth(), with an asyncio Redis client."""
        try:
            async with client.pipeline(transaction=False) as pipe:
                for name in _lists(queue):
                    pipe.llen(name)
                return sum(await pipe.execute())
        except (redis.RedisError, OSError) as exc:
            raise _no_broker(exc) from None

    def consumed(self, queue: str) -> bool:
        """True when the last answer from the workers says a live one consumes queue."""
        return self._thread is not None and queue in (self._consumed or set())

    def serves(self, queue: str) -> bool:
        """True when a live worker consumes queue. Before saying no, asks Redis whether a
        recent heartbeat names it (so a queue a worker took a moment ago counts at once,
        in every API process), and refreshes the whole view at most once a second."""
        self._start()
        if queue in (self._consumed or set()):
            return True
        if self._beating_for(queue):
            with self._lock:
                self._consumed = (self._consumed or set()) | {queue}
            return True
        if time.monotonic() - self._fetched_at > 1.0:
            self.refresh()
        return queue in (self._consumed or set())

    def _beating_for(self, queue: str) -> bool:
        try:
            return heartbeat.serving(self.redis, queue)
        except redis.RedisError as exc:  # publishing will say the broker is gone
            log.warning("could not read which workers serve %s: %s", queue, exc)
            return False

    def refresh(self) -> None:
        """Ask the workers which queues they consume (waits at most `timeout`), and add the
        queues their recent heartbeats name: a worker busy with a long batch answers late."""
        with self._lock:
            try:
                beats = heartbeat.read_all(self.redis)
                expected = len(beats) or None
                replies = control.inspect(self.celery, "active_queues", self.timeout, expected)
            except (OSError, redis.RedisError, kombu.exceptions.KombuError) as exc:
                log.warning("could not ask the workers for their queues: %s", exc)
                beats, replies = {}, {}
            consumed = {queue["name"] for queues in replies.values() for queue in queues}
            self._consumed = consumed | heartbeat.served_queues(beats)
            self._fetched_at = time.monotonic()

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="queue-watch", daemon=True)
                self._thread.start()
        if self._consumed is None:
            self.refresh()

    def close(self) -> None:
        """Stop the background refresh (for an app that is done, as in tests)."""
        self._closed.set()

    def _loop(self) -> None:
        while not self._closed.wait(self.refresh_s):
            try:
                self.refresh()
            except Exception:  # the watcher must outlive any one failure
                log.exception("refreshing the worker queues failed")


def _lists(queue: str) -> list[str]:
    """The Redis lists of queue, one per priority."""
    return [priority_key(queue, priority) for priority in (0, *PRIORITIES)]


def _no_broker(exc: Exception) -> Unavailable:
    error = Unavailable(f"the broker does not answer: {exc}")
    error.retry_after = 5
    return error
