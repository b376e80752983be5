"""API side of batching: concurrent sync requests for one model version travel as one job."""

from __future__ import annotations

import copy
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from inference_farm import dataplane
from inference_farm.errors import DeadlineExceeded, FarmError, error_for_status
from inference_farm.queues import QueueWatch
from inference_farm.replies import Inbox
from inference_farm.request_ids import trace_fields

log = logging.getLogger(__name__)
BATCH_TASK = "farm.infer_batch"


@dataclass(eq=False)
class _Waiter:
    """One HTTP request waiting for its part of a coalesced job."""

    prepared: dataplane.Prepared
    deadline: float
    done: threading.Event = field(default_factory=threading.Event)
    reply: dict[str, Any] | None = None
    error: FarmError | None = None
    task_id: str | None = None
    trace: dict[str, Any] = field(default_factory=trace_fields)  # taken on the request's thread

    def settle(self, reply: dict[str, Any] | None, error: FarmError | None) -> None:
        """Hand the request its reply or (its own copy of) the error, and wake it."""
        self.reply, self.error = reply, copy.copy(error) if error is not None else None
        self.done.set()


@dataclass
class _Lane:
    """The requests of one (model, version, priority) waiting to be sent, and jobs in flight."""

    model: str
    version: str
    priority: int
    pending: deque[_Waiter] = field(default_factory=deque)
    inflight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class Coalescer:
    """Sends what is waiting as one job whenever fewer than max_inflight jobs are in flight."""

    def __init__(
        self, celery: Celery, watch: QueueWatch, max_inflight: int, max_queue_length: int
    ) -> None:
        self.celery, self.watch = celery, watch
        self.max_inflight, self.max_queue_length = max_inflight, max_queue_length
        self.inbox = Inbox(celery.conf.broker_url or "")
        self._lanes: dict[tuple[str, str, int], _Lane] = {}
        self._lock = threading.Lock()

    def infer(self, prepared: dataplane.Prepared, deadline: float, priority: int) -> dict:
        """The worker's reply to one request, sent along with whatever else is waiting."""
        lane = self._lane(prepared.model, prepared.version, priority)
        waiter = _Waiter(prepared, deadline)
        timeout = max(deadline - time.time(), 0)
        with lane.lock:
            lane.pending.append(waiter)
            batch = self._take(lane)
        if batch:
            self._send(lane, batch)
        if not waiter.done.wait(max(deadline - time.time(), 0)):
            raise self._expired(lane, waiter, timeout)
        if waiter.error is not None:
            raise waiter.error
        return dataplane.answer(waiter.reply, waiter.task_id or "")

    def _lane(self, model: str, version: str, priority: int) -> _Lane:
        key = (model, version, priority)
        lane = self._lanes.get(key)
        if lane is None:
            with self._lock:
                lane = self._lanes.setdefault(key, _Lane(model, version, priority))
        return lane

    def _take(self, lane: _Lane) -> list[_Waiter]:
        """Waiting requests up to one job's rows, if a job may go now; call under lane.lock."""
        if lane.inflight >= self.max_inflight or not lane.pending:
            return []
        first = lane.pending.popleft()
        batch, rows = [first], first.prepared.rows
        while lane.pending and rows + lane.pending[0].prepared.rows <= first.prepared.max_rows:
            rows += lane.pending[0].prepared.rows
            batch.append(lane.pending.popleft())
        lane.inflight += 1
        return batch

    def _send(self, lane: _Lane, batch: list[_Waiter]) -> None:
        """Publish batch as one job whose reply comes to the inbox; on to the next batch if the
        job cannot be published."""
        while batch:
            deadline = max(waiter.deadline for waiter in batch)
            task_id = str(uuid.uuid4())
            for waiter in batch:
                waiter.task_id = task_id
            self.inbox.expect(task_id, deadline, self._on_reply(lane, batch))
            try:
                self._publish(lane, batch, deadline, task_id)
                return
            except FarmError as exc:
                self.inbox.forget(task_id)
                batch = self._settle_all(lane, batch, exc)

    def _publish(self, lane: _Lane, batch: list[_Waiter], deadline: float, task_id: str) -> None:
        payload = {
            "model": lane.model,
            "version": lane.version,
            "reply_to": self.inbox.key,
            "requests": [{**w.prepared.item, "deadline": w.deadline, **w.trace} for w in batch],
        }
        shapes = batch[0].prepared.shapes
        dataplane.publish(
            self.celery, self.watch, BATCH_TASK, payload, lane.model, deadline,
            self.max_queue_length, priority=lane.priority, task_id=task_id, ignore_result=True,
            argsrepr=f"({lane.model!r}, {lane.version!r}, {len(batch)} x {shapes!r})",
        )  # fmt: skip

    def _on_reply(self, lane: _Lane, batch: list[_Waiter]) -> Callable[[Any, Any], None]:
        """What the inbox calls with the job's reply, or with the error of a job that never
        answered: hand each request its own reply, then send what waited meanwhile."""

        def settle(reply: Any, error: FarmError | None) -> None:
            try:
                replies = _replies(reply, len(batch)) if error is None else None
            except FarmError as exc:
                replies, error = None, exc
            if replies is None:
                self._send(lane, self._settle_all(lane, batch, error))
                return
            for waiter, one in zip(batch, replies, strict=True):
                waiter.settle(one, None)
            self._send(lane, self._release(lane))

        return settle

    def _settle_all(self, lane: _Lane, batch: list[_Waiter], error: FarmError) -> list[_Waiter]:
        """Give every request of batch the error; the next batch to send, if any."""
        for waiter in batch:
            waiter.settle(None, error)
        return self._release(lane)

    def _release(self, lane: _Lane) -> list[_Waiter]:
        """A job of lane ended; the requests that waited meanwhile, if one may go now."""
        with lane.lock:
            lane.inflight -= 1
            return self._take(lane)

    def _expired(self, lane: _Lane, waiter: _Waiter, timeout: float) -> DeadlineExceeded:
        """The error of a request past its deadline, no longer waiting to be sent."""
        with lane.lock:
            if waiter in lane.pending:
                lane.pending.remove(waiter)
        extra = {"job_id": waiter.task_id} if waiter.task_id else {}
        return DeadlineExceeded(
            f"no answer within {timeout:.3g}s; the job will not run after its deadline", **extra
        )


def _replies(reply: Any, count: int) -> list[dict[str, Any]]:
    """The per-request replies of a coalesced job; a whole-job failure is every request's."""
    if isinstance(reply, dict) and reply.get("ok") and isinstance(reply.get("replies"), list):
        if len(reply["replies"]) == count:
            return reply["replies"]
        raise error_for_status(500, f"the job answered {len(reply['replies'])} of {count}")
    if isinstance(reply, dict) and "error" in reply:
        return [reply] * count
    raise error_for_status(500, f"the job ended without a result ({reply!r})")
