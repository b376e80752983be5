"""The data plane shared by sync infer and jobs: check a request, queue it, wait for it."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout
from sqlalchemy.orm import Session

from inference_farm.celery_app import model_queue
from inference_farm.errors import (
    Conflict,
    DeadlineExceeded,
    InvalidInput,
    RateLimited,
    Unavailable,
    error_for_status,
)
from inference_farm.metrics import rate_limited
from inference_farm.queues import QueueWatch
from inference_farm.registry import catalog
from inference_farm.request_ids import trace_fields
from inference_farm.runtime.codec import InferRequest, pack, validate

log = logging.getLogger(__name__)
INFER_TASK = "farm.infer"
MAX_PRIORITY = 9


@dataclass
class Prepared:
    """A checked request, ready to travel as a Celery job."""

    model: str
    version: str
    payload: dict[str, Any]
    request: InferRequest
    shapes: str = field(default="")


def prepare(session: Session, name: str, version: str | None, request: InferRequest) -> Prepared:
    """Resolve the version and check the request against its signature (400 before enqueue)."""
    record = catalog.resolve(session, name, version)
    if record.status == "pending":  # validation is under way: worth retrying shortly
        error = Unavailable(f"version {record.version} of model {name!r} is still being validated")
        error.retry_after = 5
        raise error
    if record.status != "ready":  # failed: retrying cannot help
        reason = f": {record.error}" if record.error else ""
        raise Conflict(f"version {record.version} of model {name!r} is {record.status}{reason}")
    validate(request, record.signature or {})
    inputs = {tensor.name: pack(tensor.array, tensor.datatype) for tensor in request.inputs}
    outputs = [output.name for output in request.outputs] if request.outputs else None
    payload = {"model": name, "version": record.version, "inputs": inputs, "outputs": outputs}
    shapes = " ".join(f"{t.name}:{t.datatype}{list(t.array.shape)}" for t in request.inputs)
    return Prepared(name, record.version, payload, request, shapes)


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
) -> str:
    """Queue the request on its model's queue; the task id. 503 if no worker, 429 if full."""
    queue = model_queue(prepared.model)
    if not watch.serves(queue):
        error = Unavailable(f"no live worker serves model {prepared.model!r} (queue {queue})")
        error.retry_after = 5
        raise error
    if watch.depth(queue) >= max_queue_length:
        rate_limited("queue_full")
        full = f"the queue of model {prepared.model!r} is full ({max_queue_length} jobs waiting)"
        raise RateLimited(full)
    payload = {**prepared.payload, "deadline": deadline, "job_id": task_id, **trace_fields()}
    try:
        result = celery.send_task(
            INFER_TASK,
            args=[payload],
            queue=queue,
            task_id=task_id,
            priority=MAX_PRIORITY - check_priority(priority),  # on Redis 0 goes first
            expires=deadline,
            argsrepr=f"({prepared.model!r}, {prepared.version!r}, {prepared.shapes!r})",
            kwargsrepr="{}",
        )
    except Exception as exc:
        reason = f"could not queue the request: the broker did not answer ({exc})"
        raise Unavailable(reason) from None
    return result.id


def wait(celery: Celery, task_id: str, deadline: float) -> dict[str, Any]:
    """The worker's answer to a queued request; 504 with the job id past the deadline."""
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
    return answer(reply, task_id)


def answer(reply: Any, task_id: str) -> dict[str, Any]:
    """A worker's reply, or the error it carries as the matching FarmError."""
    if not isinstance(reply, dict):
        raise error_for_status(500, f"the job ended without a result ({reply!r})")
    if not reply.get("ok"):
        error = error_for_status(int(reply.get("status", 500)), str(reply.get("error")))
        error.extra = {"job_id": task_id}
        raise error
    return reply
