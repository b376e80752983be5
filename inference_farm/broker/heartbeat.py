"""Worker heartbeats in Redis: who is alive, since when last heard, on which device and port,
and which queues it consumes.

A heartbeat comes from its own thread, so a worker whose consumer thread is busy with a
long inline batch (and answers no broadcast until it ends) still says what it serves.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from inference_farm.broker.names import HEARTBEAT_KEY, SERVING_KEY

log = logging.getLogger(__name__)
KEY = HEARTBEAT_KEY
# SERVING_KEY: one sorted set per queue, the hostnames that consume it scored by the time of
# their last beat, so that "does a live worker consume this queue?" is one read.
INTERVAL_S = 5.0
TTL_S = 30  # a worker silent this long is gone from the listing
FRESH_S = 2 * INTERVAL_S + 1  # a beat this recent vouches for the queues it names
_soon = threading.Event()


def beat(client: redis.Redis, hostname: str, info: dict[str, Any]) -> None:
    """Record that hostname is alive now, with info (pid, device, metrics port, queues)."""
    now = time.time()
    document = {**info, "hostname": hostname, "at": now}
    with client.pipeline(transaction=False) as pipe:
        pipe.set(KEY.format(hostname), json.dumps(document), ex=TTL_S)
        for queue in info.get("queues") or []:
            pipe.zadd(SERVING_KEY.format(queue), {hostname: now})
            pipe.expire(SERVING_KEY.format(queue), TTL_S)
        pipe.execute()


def serving(client: redis.Redis, queue: str) -> bool:
    """True when a worker's beat of the last FRESH_S seconds names queue (one Redis read)."""
    return int(client.zcount(SERVING_KEY.format(queue), time.time() - FRESH_S, "+inf")) > 0


def start(
    client: redis.Redis, hostname: str, info: dict[str, Any], live: Callable[[], dict[str, Any]]
) -> threading.Thread:
    """Beat every INTERVAL_S seconds (or at once after soon()) for the life of the process,
    with what live() returns at each beat (its queues, its loaded sessions) added to info."""

    def loop() -> None:
        failing = False
        while True:
            try:
                beat(client, hostname, {**info, **live()})
                failing = False
            except redis.RedisError as exc:
                if not failing:  # one line per outage, not one per beat
                    log.warning("heartbeat: the broker does not answer: %s", exc)
                failing = True
            except Exception:  # the heartbeat must outlive any one failure
                log.exception("heartbeat: beating failed")
            _soon.wait(INTERVAL_S)
            _soon.clear()

    thread = threading.Thread(target=loop, name="heartbeat", daemon=True)
    thread.start()
    return thread


def soon() -> None:
    """Beat now rather than at the next interval (the worker's queues just changed)."""
    _soon.set()


def stop(client: redis.Redis, hostname: str) -> None:
    """Remove hostname's heartbeat, and its name from the queues it served, as it shuts down."""
    try:
        raw = client.get(KEY.format(hostname))
        queues = (json.loads(raw).get("queues") or []) if raw else []
        with client.pipeline(transaction=False) as pipe:
            pipe.delete(KEY.format(hostname))
            for queue in queues:
                pipe.zrem(SERVING_KEY.format(queue), hostname)
            pipe.execute()
    except redis.RedisError as exc:
        log.warning("heartbeat: could not remove %s: %s", hostname, exc)


def served_queues(beats: dict[str, dict[str, Any]]) -> set[str]:
    """The queues named by the beats of the last FRESH_S seconds."""
    recent = time.time() - FRESH_S
    fresh = [one for one in beats.values() if float(one.get("at") or 0) >= recent]
    return {queue for one in fresh for queue in one.get("queues") or []}


def expected_replies(client: redis.Redis) -> int | None:
    """How many workers a broadcast should wait for: those with a live heartbeat, or None."""
    try:
        return len(read_all(client)) or None
    except redis.RedisError:
        return None


def read_all(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """The latest heartbeat of every live worker, by hostname."""
    keys = list(client.scan_iter(match=KEY.format("*"), count=100))
    if not keys:
        return {}
    found = {}
    for raw in client.mget(keys):
        if raw:
            document = json.loads(raw)
            found[document["hostname"]] = document
    return found
