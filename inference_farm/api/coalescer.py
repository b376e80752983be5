"""API side of batching: concurrent sync requests for one model version travel as one job.

Everything here runs on one asyncio event loop: the API server's own, or, for callers in
other threads (the Flask view under a plain WSGI server), a loop thread started on demand.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from celery import Celery

from inference_farm.api import enqueue
from inference_farm.broker.connections import async_redis_client
from inference_farm.broker.names import INFER_BATCH_TASK
from inference_farm.broker.publisher import Publisher
from inference_farm.broker.queues import QueueWatch
from inference_farm.broker.replies import Inbox
from inference_farm.errors import DeadlineExceeded, FarmError, Unavailable, error_for_status
from inference_farm.protocol.messages import (
    BatchJob,
    BatchReply,
    Group,
    Reply,
    RequestMeta,
    encode,
    failure,
)
from inference_farm.protocol.packing import pack

log = logging.getLogger(__name__)
BATCH_TASK = INFER_BATCH_TASK
REDIS_TIMEOUT_S = 5.0


@dataclass(eq=False)
class _Waiter:
    """One HTTP request waiting for its part of a coalesced job."""

    prepared: enqueue.Prepared
    deadline: float
    trace: dict[str, Any]
    future: asyncio.Future
    arrived: float = 0.0  # loop time
    task_id: str | None = None
    timer: asyncio.TimerHandle | None = None

    def settle(self, reply: Reply | None, error: FarmError | None) -> None:
        """Hand the request its reply or (its own copy of) the error."""
        if self.timer is not None:
            self.timer.cancel()
        if self.future.done():
            return
        if error is not None:
            self.future.set_exception(copy.copy(error))
        else:
            self.future.set_result(reply)


@dataclass
class _Lane:
    """The requests of one (model, version, priority) waiting to be sent, and jobs in flight."""

    model: str
    version: str
    priority: int
    pending: deque[_Waiter] = field(default_factory=deque)
    inflight: int = 0
    filling: asyncio.TimerHandle | None = None  # sends what waits once max_delay_s is up


class Coalescer:
    """Sends what is waiting as one job whenever fewer than max_inflight jobs are in flight."""

    def __init__(
        self, celery: Celery, watch: QueueWatch, max_inflight: int, max_queue_length: int
    ) -> None:
        self.celery, self.watch = celery, watch
        self.max_inflight, self.max_queue_length = max_inflight, max_queue_length
        self.inbox = Inbox(celery.conf.broker_url or "")
        self._lanes: dict[tuple[str, str, int], _Lane] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._publisher: Publisher | None = None
        self._bind_lock = threading.Lock()
        self._sending: set[asyncio.Task] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run on loop from now on (the API server's loop, at its start)."""
        with self._bind_lock:
            if self._loop is not None and self._loop is not loop:
                raise RuntimeError("the coalescer already runs on another event loop")
            self._loop = loop

    async def infer(
        self, prepared: enqueue.Prepared, deadline: float, priority: int, trace: dict
    ) -> dict:
        """The worker's reply to one request, sent along with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self.bind(loop)  # the first loop to use it; any other is refused
        lane = self._lane(prepared.model, prepared.version, priority)
        waiter = _Waiter(prepared, deadline, trace, loop.create_future(), loop.time())
        timeout = max(deadline - time.time(), 0)
        waiter.timer = loop.call_later(timeout, self._expire, lane, waiter, timeout)
        lane.pending.append(waiter)
        self._pump(lane)
        try:
            reply = await waiter.future
        except asyncio.CancelledError:  # the client went away: send nothing more for it
            self._abandon(lane, waiter)
            raise
        return enqueue.answer(reply, waiter.task_id or "")

    def close(self) -> None:
        """Forget the bound loop; the loop, and the tasks on it, belong to its owner."""
        with self._bind_lock:
            self._loop = None

    def _lane(self, model: str, version: str, priority: int) -> _Lane:
        key = (model, version, priority)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(model, version, priority)
        return lane

    def _pump(self, lane: _Lane) -> None:
        """Send what waits on lane, one job at a time, while fewer than max_inflight fly;
        a model with a queue delay lets its first request wait that long for company."""
        loop = asyncio.get_running_loop()
        while lane.pending and lane.inflight < self.max_inflight:
            first = lane.pending[0].prepared
            wait = lane.pending[0].arrived + first.max_delay_s - loop.time()
            if wait > 0 and sum(w.prepared.rows for w in lane.pending) < first.max_rows:
                if lane.filling is None:
                    lane.filling = loop.call_later(wait, self._filled, lane)
                return
            if lane.filling is not None:
                lane.filling.cancel()
                lane.filling = None
            batch = self._take(lane)
            lane.inflight += 1
            task = loop.create_task(self._send(lane, batch))
            self._sending.add(task)  # a task nobody holds may be collected before it ends
            task.add_done_callback(self._sending.discard)

    def _filled(self, lane: _Lane) -> None:
        lane.filling = None
        self._pump(lane)

    def _take(self, lane: _Lane) -> list[_Waiter]:
        """The oldest waiting request and those behind it, up to one job's rows."""
        first = lane.pending.popleft()
        batch, rows = [first], first.prepared.rows
        while lane.pending and rows + lane.pending[0].prepared.rows <= first.prepared.max_rows:
            rows += lane.pending[0].prepared.rows
            batch.append(lane.pending.popleft())
        return batch

    async def _send(self, lane: _Lane, batch: list[_Waiter]) -> None:
        """Publish batch as one job whose reply comes to the inbox."""
        deadline = max(waiter.deadline for waiter in batch)
        task_id = str(uuid.uuid4())
        for waiter in batch:
            waiter.task_id = task_id
        try:
            groups, batch = stack(batch)
            self.inbox.expect(task_id, deadline, self._on_reply(lane, batch))
            await self._publish(lane, groups, batch, task_id)
        except FarmError as exc:
            self.inbox.forget(task_id)
            self._settle_all(lane, batch, exc)
        except Exception as exc:  # nothing may leave a request waiting for nothing
            log.exception("publishing a coalesced job failed")
            self.inbox.forget(task_id)
            self._settle_all(lane, batch, error_for_status(500, f"could not queue: {exc}"))

    async def _publish(
        self, lane: _Lane, groups: list[Group], batch: list[_Waiter], task_id: str
    ) -> None:
        queue = await self._check_queue(lane.model)
        payload = encode(BatchJob(lane.model, lane.version, groups, self.inbox.key))
        shapes = batch[0].prepared.shapes
        try:
            await self._publisher_for().publish(
                queue, BATCH_TASK, payload, task_id=task_id, ignore_result=True,
                serializer="msgpack",  # raw tensor bytes: measured half the cost of JSON
                priority=enqueue.MAX_PRIORITY - lane.priority,  # on Redis 0 goes first
                argsrepr=f"({lane.model!r}, {lane.version!r}, {len(batch)} x {shapes!r})",
                kwargsrepr="{}",
            )  # fmt: skip
        except Exception as exc:
            reason = f"could not queue the request: the broker did not answer ({exc})"
            raise Unavailable(reason) from None
        self.watch.sent(queue)

    async def _check_queue(self, model: str) -> str:
        """model's queue; 503 when no live worker serves it, 429 when it is full."""
        queue = enqueue.model_queue(model)
        if not self.watch.consumed(queue):
            loop = asyncio.get_running_loop()
            if not await loop.run_in_executor(None, self.watch.serves, queue):
                raise enqueue.no_worker(model, queue)
        if await self.watch.full_async(queue, self.max_queue_length, self._publisher_for().client):
            raise enqueue.queue_full(model, self.max_queue_length)
        return queue

    def _publisher_for(self) -> Publisher:
        if self._publisher is None:
            client = async_redis_client(self.celery.conf.broker_url or "", REDIS_TIMEOUT_S)
            self._publisher = Publisher(self.celery, client)
        return self._publisher

    def _on_reply(self, lane: _Lane, batch: list[_Waiter]) -> Callable[[Any, Any], None]:
        """What the inbox calls with the job's reply, or with the error of a job that never
        answered: hand each request its own reply, then send what waited meanwhile."""

        def settle(reply: BatchReply | None, error: FarmError | None) -> None:
            try:
                replies = _replies(reply, len(batch)) if reply is not None else None
            except FarmError as exc:
                replies, error = None, exc
            if replies is None:
                self._settle_all(lane, batch, error or error_for_status(500, "no reply"))
                return
            for waiter, one in zip(batch, replies, strict=True):
                waiter.settle(one, None)
            self._release(lane)

        return settle

    def _settle_all(self, lane: _Lane, batch: list[_Waiter], error: FarmError) -> None:
        """Give every request of batch the error, then send what waited meanwhile."""
        for waiter in batch:
            waiter.settle(None, error)
        self._release(lane)

    def _release(self, lane: _Lane) -> None:
        lane.inflight -= 1
        self._pump(lane)

    def _abandon(self, lane: _Lane, waiter: _Waiter) -> None:
        if waiter in lane.pending:
            lane.pending.remove(waiter)
        if waiter.timer is not None:
            waiter.timer.cancel()

    def _expire(self, lane: _Lane, waiter: _Waiter, timeout: float) -> None:
        """A request's deadline passed: it stops waiting, and is not sent if it has not been."""
        if waiter in lane.pending:
            lane.pending.remove(waiter)
        extra = {"job_id": waiter.task_id} if waiter.task_id else {}
        waiter.timer = None
        waiter.settle(
            None,
            DeadlineExceeded(
                f"no answer within {timeout:.3g}s; the job will not run after its deadline",
                **extra,
            ),
        )


def stack(batch: list[_Waiter]) -> tuple[list[Group], list[_Waiter]]:
    """A job's groups, and its requests in the order of its replies.

    Requests with the same stack_key become one group: each input is one tensor, the rows
    of every request one after the other; a request that cannot be stacked is a group alone.
    """
    members: dict[Any, list[_Waiter]] = {}
    for waiter in batch:
        key = waiter.prepared.stack_key
        members.setdefault(waiter if key is None else key, []).append(waiter)
    groups = [_group(waiters) for waiters in members.values()]
    return groups, [waiter for waiters in members.values() for waiter in waiters]


def _group(waiters: list[_Waiter]) -> Group:
    first = waiters[0].prepared
    inputs = {}
    for index, tensor in enumerate(first.request.inputs):
        arrays = [waiter.prepared.request.inputs[index].array for waiter in waiters]
        stacked = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        inputs[tensor.name] = pack(stacked, tensor.datatype, raw=True)
    return Group(
        inputs=inputs,
        requests=[RequestMeta(deadline=waiter.deadline, **waiter.trace) for waiter in waiters],
        outputs=first.outputs,
        rows=[waiter.prepared.rows for waiter in waiters],
    )


def _replies(reply: BatchReply, count: int) -> list[Reply]:
    """The per-request replies of a coalesced job; a whole-job failure is every request's."""
    if reply.ok:
        if len(reply.replies) == count:
            return reply.replies
        raise error_for_status(500, f"the job answered {len(reply.replies)} of {count}")
    return [failure(str(reply.error), reply.status or 500)] * count
