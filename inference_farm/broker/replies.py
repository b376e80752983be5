"""Replies to coalesced jobs: a worker pushes each onto the asking API process's own Redis list.

One list per API process, read by one task on the API's event loop: a reply costs one RPUSH
and settles its waiters at once, where Celery's result backend would store it, publish it
and poll for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import redis

from inference_farm.broker.connections import async_redis_client
from inference_farm.broker.names import REPLY_KEY
from inference_farm.errors import DeadlineExceeded, FarmError
from inference_farm.protocol.messages import BatchReply, ReplyMessage, decode, encode

log = logging.getLogger(__name__)
REPLY_TTL_S = 300  # an inbox whose API process is gone disappears after this long
POLL_S = 0.5  # how often the reader also looks for jobs that will never answer
GRACE_S = 1.0  # a job is given up this long after its deadline
READ_BATCH = 64  # replies taken per round trip once one has arrived
Callback = Callable[[Any, FarmError | None], None]


def send_reply(client: Any, key: str, task_id: str, reply: BatchReply) -> None:
    """Push a job's reply onto the inbox key (worker side)."""
    message = orjson.dumps(encode(ReplyMessage(task_id, reply)), default=str)
    with client.pipeline(transaction=False) as pipe:
        pipe.rpush(key, message)
        pipe.expire(key, REPLY_TTL_S)
        pipe.execute()


class Inbox:
    """This process's reply list: calls back each expected job once, with its reply or error.

    Every method runs on one event loop; the reader task starts with the first expect().
    """

    def __init__(self, broker_url: str) -> None:
        self.key = REPLY_KEY.format(uuid.uuid4().hex)
        self._url = broker_url
        self._waiting: dict[str, tuple[float, Callback]] = {}
        self._reader: asyncio.Task | None = None
        self._down = False  # the broker failed the last read: warned once, not every poll
        self._blmpop = True  # until the broker says it has no BLMPOP

    def expect(self, task_id: str, deadline: float, callback: Callback) -> None:
        """Call callback(reply, None) when task_id answers, or (None, error) past deadline."""
        self._waiting[task_id] = (deadline, callback)
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._loop(), name="inbox")

    def forget(self, task_id: str) -> None:
        """Stop expecting task_id (it was never sent)."""
        self._waiting.pop(task_id, None)

    async def _loop(self) -> None:
        client = async_redis_client(self._url, POLL_S + 5)
        task = asyncio.current_task()
        try:
            # A cancelled read can come back as a plain error (redis-py's hiredis parser
            # swallows the cancellation), so the loop also asks whether it is being cancelled.
            while not _cancelling(task):
                await self._read_guarded(client)
                self._give_up_late()
        finally:
            await client.aclose()

    async def _read_guarded(self, client: Any) -> None:
        try:
            await self._read_once(client)
            if self._down:
                log.info("reading replies from the broker again")
                self._down = False
        except (redis.RedisError, OSError) as exc:
            if not self._down:
                log.warning("could not read replies from the broker: %s", exc)
                self._down = True
            await asyncio.sleep(POLL_S)
        except Exception:  # the reader must outlive any one failure
            log.exception("reading replies failed")
            await asyncio.sleep(POLL_S)

    async def _read_once(self, client: Any) -> None:
        if self._blmpop:
            try:
                # Up to READ_BATCH replies in one round trip (Redis 7 and later).
                found = await client.blmpop(POLL_S, 1, self.key, direction="LEFT", count=READ_BATCH)
            except redis.ResponseError:  # an older Redis: BLPOP, then LPOP what else waits
                self._blmpop = False
                return
            for raw in found[1] if found else []:
                self._deliver(raw)
            return
        popped = await client.blpop([self.key], timeout=POLL_S)
        if popped is not None:
            self._deliver(popped[1])
            for raw in await client.lpop(self.key, READ_BATCH) or []:
                self._deliver(raw)

    def _deliver(self, raw: bytes) -> None:
        try:
            message = decode(ReplyMessage, orjson.loads(raw))
        except (ValueError, FarmError) as exc:
            log.warning("dropped a malformed reply on %s: %s", self.key, exc)
            return
        task_id, reply = message.task_id, message.reply
        waiting = self._waiting.pop(task_id, None)
        if waiting is None:
            return
        try:
            waiting[1](reply, None)
        except Exception:
            log.exception("handing out the reply of %s failed", task_id)

    def _give_up_late(self) -> None:
        now = time.time()
        late = [(k, v) for k, v in self._waiting.items() if v[0] + GRACE_S < now]
        for task_id, (_deadline, callback) in late:
            del self._waiting[task_id]
            message = "no answer within the request's timeout; the job will not run after it"
            callback(None, DeadlineExceeded(message, job_id=task_id))


def _cancelling(task: asyncio.Task | None) -> bool:
    """Whether task has been asked to stop (Python 3.11 and later can tell)."""
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling and cancelling())
