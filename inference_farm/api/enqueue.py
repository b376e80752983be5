"""Checking a request against its version, sending it as a Celery job, and waiting for it."""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout
from sqlalchemy.orm import Session

from inference_farm.broker.names import INFER_TASK, model_queue
from inference_farm.broker.queues import QueueWatch
from inference_farm.errors import (
    Conflict,
    DeadlineExceeded,
    InvalidInput,
    RateLimited,
    Unavailable,
    error_for_status,
)
from inference_farm.protocol.codec import InferRequest, validate
from inference_farm.protocol.messages import InferJob, Reply, decode, encode
from inference_farm.protocol.packing import pack
from inference_farm.registry.cached import RegistryCache, Served, read_served
from inference_farm.settings import Settings
from inference_farm.telemetry.metrics import rate_limited
from inference_farm.telemetry.request_ids import trace_fields

log = logging.getLogger(__name__)
MAX_PRIORITY = 9


@dataclass
class Prepared:
    """A checked request, ready to travel as a Celery job."""

    model: str
    version: str
    request: InferRequest
    outputs: list[str] | None = None  # the outputs it asks for; None: every output
    shapes: str = field(default="")
    rows: int = 1
    max_rows: int = 1  # rows one coalesced job may carry; 1 when the model cannot stack
    max_delay_s: float = 0.0  # how long a coalesced job may wait to fill before it is sent

    def job(self, deadline: float | None, job_id: str | None) -> InferJob:
        """The request as a job of its own, traced: packed inputs, wanted outputs, deadline."""
        inputs = {
            tensor.name: pack(tensor.array, tensor.datatype) for tensor in self.request.inputs
        }
        return InferJob(
            self.model, self.version, inputs, self.outputs, deadline, job_id, **trace_fields()
        )

    @functools.cached_property
    def stack_key(self) -> tuple | None:
        """Requests with equal keys may be stacked along dim 0 into one tensor per input
        (same inputs, datatypes, non-batch dims and wanted outputs); None: never stacked."""
        if self.max_rows <= 1:
            return None
        inputs = self.request.inputs
        if len({t.array.shape[0] if t.array.ndim else 0 for t in inputs}) != 1 or self.rows < 1:
            return None
        shapes = tuple((t.name, t.datatype, t.array.shape[1:]) for t in inputs)
        return shapes, tuple(self.outputs) if self.outputs is not None else None


def prepare(
    session: Session,
    name: str,
    version: str | None,
    request: InferRequest,
    registry: RegistryCache | None = None,
    defaults: Settings | None = None,
) -> Prepared:
    """Resolve the version and check the request against its signature (400 before enqueue)."""
    found = (
        registry.served(session, name, version) if registry else read_served(session, name, version)
    )
    return check(found, name, request, defaults)


def check(
    found: Served, name: str, request: InferRequest, defaults: Settings | None = None
) -> Prepared:
    """The request for version found of model name, checked against its status and signature;
    its batching limits are the model's, else those of defaults (none: never coalesced)."""
    if found.status == "pending":  # validation is under way: worth retrying shortly
        error = Unavailable(f"version {found.version} of model {name!r} is still being validated")
        error.retry_after = 5
        raise error
    if found.status != "ready":  # failed: retrying cannot help
        reason = f": {found.error}" if found.error else ""
        raise Conflict(f"version {found.version} of model {name!r} is {found.status}{reason}")
    validate(request, found.signature)
    outputs = [output.name for output in request.outputs] if request.outputs else None
    shapes = " ".join(f"{t.name}:{t.datatype}{list(t.array.shape)}" for t in request.inputs)
    rows = {t.array.shape[0] if t.array.ndim else 0 for t in request.inputs}
    max_rows = (
        (found.max_batch_size or (defaults.max_batch_size if defaults else 1))
        if found.batchable
        else 1
    )
    delay_ms = found.max_queue_delay_ms
    if delay_ms is None:
        delay_ms = defaults.max_queue_delay_ms if defaults else 0.0
    return Prepared(
        name, found.version, request, outputs, shapes, max(rows | {1}), max_rows, delay_ms / 1000
    )


def check_priority(priority: object) -> int:
    """priority, if an integer within 0-9 (9 most urgent); else InvalidInput."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9:
        raise InvalidInput(
            f"priority must be an integer from 0 to {MAX_PRIORITY}, got {priority!r}"
        )
    return priority


def submit(
    celery: Celery,
    watch: QueueWatch,
    prepared: Prepared,
    deadline: float | None,
    max_queue_length: int,
    priority: int = 5,
    task_id: str | None = None,
    need_worker: bool = True,
) -> str:
    """Queue the request on its model's queue; the task id. 503 if no worker (unless
    need_worker is False), 429 if full."""
    payload = encode(prepared.job(deadline, task_id))
    argsrepr = f"({prepared.model!r}, {prepared.version!r}, {prepared.shapes!r})"
    return publish(
        celery, watch, INFER_TASK, payload, prepared.model, max_queue_length,
        priority=priority, task_id=task_id, argsrepr=argsrepr, need_worker=need_worker,
    )  # fmt: skip


def publish(
    celery: Celery,
    watch: QueueWatch,
    task: str,
    payload: dict[str, Any],
    model: str,
    max_queue_length: int,
    *,
    priority: int,
    argsrepr: str,
    task_id: str | None = None,
    need_worker: bool = True,
) -> str:
    """Send task with payload to model's queue; the task id. 503 if no worker (unless
    need_worker is False: a pool that scales from zero on its queue will take it), 429 if
    full."""
    queue = model_queue(model)
    if need_worker and not watch.serves(queue):
        raise no_worker(model, queue)
    if watch.full(queue, max_queue_length):
        raise queue_full(model, max_queue_length)
    try:
        result = celery.send_task(
            task,
            args=[payload],
            queue=queue,
            task_id=task_id,
            priority=MAX_PRIORITY - check_priority(priority),  # on Redis 0 goes first
            argsrepr=argsrepr,
            kwargsrepr="{}",
        )
    except Exception as exc:
        reason = f"could not queue the request: the broker did not answer ({exc})"
        raise Unavailable(reason) from None
    watch.sent(queue)
    return result.id


def no_worker(model: str, queue: str) -> Unavailable:
    """The error of a request for a model no live worker serves."""
    error = Unavailable(f"no live worker serves model {model!r} (queue {queue})")
    error.retry_after = 5
    return error


def queue_full(model: str, max_queue_length: int) -> RateLimited:
    """The error of a request for a model whose queue is full (and its count)."""
    rate_limited("queue_full")
    return RateLimited(f"the queue of model {model!r} is full ({max_queue_length} jobs waiting)")


def wait(celery: Celery, task_id: str, deadline: float) -> Reply:
    """The worker's answer to a queued request; 504 with the job id past the deadline."""
    return answer(wait_reply(celery, task_id, deadline), task_id)


def wait_reply(celery: Celery, task_id: str, deadline: float) -> Any:
    """The worker's raw reply to a task, read once; 504 past the deadline, 503 on no backend."""
    timeout = max(deadline - time.time(), 0.001)
    result = celery.AsyncResult(task_id)
    try:
        reply = result.get(timeout=timeout, propagate=False)
    except CeleryTimeout:
        raise DeadlineExceeded(
            f"no answer within {timeout:.3g}s; the job will not run after its deadline",
            job_id=task_id,
        ) from None
    except Exception as exc:
        raise Unavailable(f"lost the result backend while waiting: {exc}", job_id=task_id) from None
    # A sync answer is read once: keeping it for result_expires would only fill Redis.
    result.forget()
    return reply


def answer(reply: Any, task_id: str) -> Reply:
    """A worker's reply (a Reply, or its plain form from the result backend), or the error
    it carries as the matching FarmError."""
    if not isinstance(reply, Reply):
        try:
            reply = decode(Reply, reply)
        except InvalidInput:
            raise error_for_status(500, f"the job ended without a result ({reply!r})") from None
    if not reply.ok:
        error = error_for_status(reply.status or 500, str(reply.error))
        error.extra = {"job_id": task_id}
        raise error
    return reply
