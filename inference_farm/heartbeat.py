"""Worker heartbeats in Redis: who is alive, since when last heard, on which device and port."""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

import redis

log = logging.getLogger(__name__)
KEY = "farm:heartbeat:{}"
INTERVAL_S = 5.0
TTL_S = 30  # a worker silent this long is gone from the listing


def beat(client: redis.Redis, hostname: str, info: dict[str, Any]) -> None:
    """Record that hostname is alive now, with info (pid, device, metrics port)."""
    document = {**info, "hostname": hostname, "at": time.time()}
    client.set(KEY.format(hostname), json.dumps(document), ex=TTL_S)


def start(client: redis.Redis, hostname: str, info: dict[str, Any]) -> threading.Thread:
    """Beat every INTERVAL_S seconds for the life of the process."""

    def loop() -> None:
        failing = False
        while True:
            try:
                beat(client, hostname, info)
                failing = False
            except redis.RedisError as exc:
                if not failing:  # one line per outage, not one per beat
                    log.warning("heartbeat: the broker does not answer: %s", exc)
                failing = True
            time.sleep(INTERVAL_S)

    thread = threading.Thread(target=loop, name="heartbeat", daemon=True)
    thread.start()
    return thread


def stop(client: redis.Redis, hostname: str) -> None:
    """Remove hostname's heartbeat, as it shuts down."""
    try:
        client.delete(KEY.format(hostname))
    except redis.RedisError as exc:
        log.warning("heartbeat: could not remove %s: %s", hostname, exc)


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
