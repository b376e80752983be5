"""API side of batching: concurrent sync requests for one model version travel as one job."""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from celery import Celery

from inference_farm import dataplane
from inference_farm.errors import DeadlineExceeded, FarmError, error_for_status
from inference_farm.queues import QueueWatch
from inference_farm.request_ids import trace_fields

log = logging.getLogger(__name__)
BATCH_TASK = "farm.infer_batch"
COLLECTORS = 64  # threads that wait for coalesced jobs' results, shared by every model


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
        self._lanes: dict[tuple[str, str, int], _Lane] = {}
        self._lock = threading.Lock()
        self._collectors = ThreadPoolExecutor(COLLECTORS, thread_name_prefix="coalesce")

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
            return self._expire(lane, waiter, timeout)
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
        """Publish batch as one job and have a collector wait for it; on to the next if the
        job cannot be published."""
        while batch:
            deadline = max(waiter.deadline for waiter in batch)
            try:
                task_id = self._publish(lane, batch, deadline)
            except FarmError as exc:
                batch = self._settle_all(lane, batch, exc)
                continue
            for waiter in batch:
                waiter.task_id = task_id
            self._collectors.submit(self._collect, lane, batch, task_id, deadline)
            return

    def _publish(self, lane: _Lane, batch: list[_Waiter], deadline: float) -> str:
        payload = {
            "model": lane.model,
            "version": lane.version,
            "requests": [{**w.prepared.item, "deadline": w.deadline, **w.trace} for w in batch],
        }
        shapes = batch[0].prepared.shapes
        return dataplane.publish(
            self.celery, self.watch, BATCH_TASK, payload, lane.model, deadline,
            self.max_queue_length, priority=lane.priority,
            argsrepr=f"({lane.model!r}, {lane.version!r}, {len(batch)} x {shapes!r})",
        )  # fmt: skip

    def _collect(self, lane: _Lane, batch: list[_Waiter], task_id: str, deadline: float) -> None:
        """Wait for a job's replies, hand each request its own, then send what waited."""
        try:
            reply = dataplane.wait_reply(self.celery, task_id, deadline)
            replies = _replies(reply, len(batch))
        except FarmError as exc:
            self._send(lane, self._settle_all(lane, batch, exc))
            return
        except Exception as exc:  # a collector must always release its lane
            log.exception("collecting job %s failed", task_id)
            error = error_for_status(500, f"collecting the job's result failed: {exc}")
            self._send(lane, self._settle_all(lane, batch, error))
            return
        for waiter, one in zip(batch, replies, strict=True):
            waiter.settle(one, None)
        self._send(lane, self._release(lane))

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

    def _expire(self, lane: _Lane, waiter: _Waiter, timeout: float) -> dict:
        with lane.lock:
            if waiter in lane.pending:
                lane.pending.remove(waiter)
        extra = {"job_id": waiter.task_id} if waiter.task_id else {}
        raise DeadlineExceeded(
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
