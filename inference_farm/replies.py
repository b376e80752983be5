"""Replies to coalesced jobs: a worker pushes each onto the asking API process's own Redis list.

One list per API process and one reader thread: a reply costs one RPUSH and wakes its
waiters at once, where Celery's result backend would store it, publish it and poll for it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import redis

from inference_farm.errors import DeadlineExceeded, FarmError
from inference_farm.health import redis_client

log = logging.getLogger(__name__)
REPLY_KEY = "farm:replies:{}"
REPLY_TTL_S = 300  # an inbox whose API process is gone disappears after this long
POLL_S = 0.5  # how often the reader also looks for jobs that will never answer
GRACE_S = 1.0  # a job is given up this long after its deadline
Callback = Callable[[Any, FarmError | None], None]


def send_reply(client: Any, key: str, task_id: str, reply: Any) -> None:
    """Push a job's reply onto the inbox key (worker side)."""
    message = json.dumps({"task_id": task_id, "reply": reply})
    with client.pipeline(transaction=False) as pipe:
        pipe.rpush(key, message)
        pipe.expire(key, REPLY_TTL_S)
        pipe.execute()


class Inbox:
    """This process's reply list: calls back each expected job once, with its reply or error."""

    def __init__(self, broker_url: str) -> None:
        self.key = REPLY_KEY.format(uuid.uuid4().hex)
        self._url = broker_url
        self._client: Any = None
        self._waiting: dict[str, tuple[float, Callback]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._down = False  # the broker failed the last read: warned once, not every poll

    def expect(self, task_id: str, deadline: float, callback: Callback) -> None:
        """Call callback(reply, None) when task_id answers, or (None, error) past deadline."""
        with self._lock:
            self._waiting[task_id] = (deadline, callback)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="inbox", daemon=True)
                self._thread.start()

    def forget(self, task_id: str) -> None:
        """Stop expecting task_id (it was never sent)."""
        with self._lock:
            self._waiting.pop(task_id, None)

    def _loop(self) -> None:
        while True:
            try:
                self._read_once()
                if self._down:
                    log.info("reading replies from the broker again")
                    self._down = False
            except redis.RedisError as exc:
                if not self._down:
                    log.warning("could not read replies from the broker: %s", exc)
                    self._down = True
                time.sleep(POLL_S)
            except Exception:  # the reader must outlive any one failure
                log.exception("reading replies failed")
            self._give_up_late()

    def _read_once(self) -> None:
        if self._client is None:
            self._client = redis_client(self._url, POLL_S + 5)
        found = self._client.blpop([self.key], timeout=POLL_S)
        while found is not None:
            self._deliver(found[1])
            found = self._client.lpop(self.key)
            found = (self.key, found) if found is not None else None

    def _deliver(self, raw: bytes) -> None:
        try:
            message = json.loads(raw)
            task_id, reply = message["task_id"], message["reply"]
        except (ValueError, KeyError, TypeError):
            log.warning("dropped a malformed reply on %s", self.key)
            return
        with self._lock:
            waiting = self._waiting.pop(task_id, None)
        if waiting is not None:
            waiting[1](reply, None)

    def _give_up_late(self) -> None:
        now = time.time()
        with self._lock:
            late = [(k, v) for k, v in self._waiting.items() if v[0] + GRACE_S < now]
            for task_id, _ in late:
                del self._waiting[task_id]
        for task_id, (_deadline, callback) in late:
            message = "no answer within the request's timeout; the job will not run after it"
            callback(None, DeadlineExceeded(message, job_id=task_id))
