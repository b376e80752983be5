"""Celery task messages sent from asyncio: Celery builds the message, one LPUSH queues it.

kombu's own publish costs a new client, a routing lookup and a blocking round trip per
message; on the API's event loop that would stall every other request. The envelope here is
the one kombu's Redis transport writes (tests compare the two), so Celery workers consume it
as any other message.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import msgpack
import orjson
import redis.asyncio as aioredis
from celery import Celery

PRIORITY_SEP = ":"  # celeryconfig's broker "sep": priority p > 0 lives on "<queue>:<p>"


def priority_key(queue: str, priority: int) -> str:
    """The Redis list that holds queue's messages of kombu priority 0-9 (0 first)."""
    return f"{queue}{PRIORITY_SEP}{priority}" if priority else queue


SERIALIZERS = {  # name: (content type, content encoding, dumps), as kombu registers them
    "json": ("application/json", "utf-8", orjson.dumps),
    "msgpack": (
        "application/x-msgpack",
        "binary",
        lambda body: msgpack.packb(body, use_bin_type=True),
    ),
}


def envelope(
    celery: Celery, queue: str, task: str, args: list[Any], task_id: str, priority: int,
    serializer: str = "json", **options: Any,
) -> bytes:  # fmt: skip
    """The JSON kombu's Redis transport would push for this task, its body in serializer
    (json, or msgpack, which carries bytes as they are); options go to Celery."""
    content_type, content_encoding, dumps = SERIALIZERS[serializer]
    message = celery.amqp.as_task_v2(task_id, task, args=args, kwargs={}, **options)
    body = dumps(message.body)
    properties = {
        **message.properties,
        # Celery's own publish carries these among the properties too.
        **{k: options[k] for k in ("argsrepr", "kwargsrepr") if k in options},
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": queue},
        "priority": priority,
        "body_encoding": "base64",
        "delivery_tag": str(uuid.uuid4()),
    }
    return orjson.dumps(
        {
            "body": base64.b64encode(body).decode("ascii"),
            "content-encoding": content_encoding,
            "content-type": content_type,
            "headers": message.headers,
            "properties": properties,
        }
    )


class Publisher:
    """Queues Celery tasks on Redis from the event loop that first uses it."""

    def __init__(self, celery: Celery, client: aioredis.Redis) -> None:
        self.celery, self.client = celery, client

    async def publish(
        self, queue: str, task: str, payload: dict[str, Any], *, priority: int, task_id: str,
        **options: Any,
    ) -> None:  # fmt: skip
        """Queue task(payload) on queue at kombu priority 0-9; redis errors propagate."""
        message = envelope(self.celery, queue, task, [payload], task_id, priority, **options)
        await self.client.lpush(priority_key(queue, priority), message)
