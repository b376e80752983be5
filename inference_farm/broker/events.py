"""Registry changes on a Redis pub/sub channel: published by whoever commits them (the API,
the workers), heard by every API process that streams events to consoles."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import redis

from inference_farm.broker.names import EVENTS_CHANNEL

log = logging.getLogger(__name__)
LISTEN_POLL_S = 1.0
RETRY_S = 2.0


def channel(client: redis.Redis) -> str:
    """The channel of client's database: pub/sub spans a server's databases, and two farms
    on one Redis server with their own database numbers must not hear each other."""
    return f"{EVENTS_CHANNEL}:{client.connection_pool.connection_kwargs.get('db', 0)}"


def publisher(client: redis.Redis) -> Callable[[list[dict[str, Any]]], None]:
    """A registry sink that publishes each batch of changes as one JSON message."""

    failing = threading.Event()
    name = channel(client)

    def publish(changes: list[dict[str, Any]]) -> None:
        try:
            client.publish(name, json.dumps(changes, default=str))
        except redis.RedisError as exc:  # the change is committed; only watchers miss it
            if not failing.is_set():
                log.warning("registry events: could not publish to the broker: %s", exc)
            failing.set()
        else:
            failing.clear()

    return publish


def listen(
    client: redis.Redis, deliver: Callable[[list[dict]], None], stop: threading.Event
) -> None:
    """Call deliver(changes) for each message on the channel until stop is set; an outage
    is logged once and the subscription made again."""
    failing = False
    while not stop.is_set():
        try:
            with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                pubsub.subscribe(channel(client))
                failing = False
                while not stop.is_set():
                    message = pubsub.get_message(timeout=LISTEN_POLL_S)
                    if message is not None:
                        deliver(_decode(message.get("data")))
        except redis.RedisError as exc:
            if not failing:
                log.warning("registry events: the broker does not answer: %s", exc)
            failing = True
            stop.wait(RETRY_S)


def _decode(data: Any) -> list[dict]:
    try:
        changes = json.loads(data)
    except (TypeError, ValueError):
        return []
    if not isinstance(changes, list):
        return []
    return [change for change in changes if isinstance(change, dict)]
