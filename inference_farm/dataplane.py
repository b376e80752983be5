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
from inference_farm.registry.cached import RegistryCache, read_served
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
    rows: int = 1
    max_rows: int = 1  # rows one coalesced job may carry; 1 when the model cannot stack

    @property
    def item(self) -> dict[str, Any]:
        """The request's part of a coalesced job: its inputs and wanted outputs."""
        return {"inputs": self.payload["inputs"], "outputs": self.payload["outputs"]}


def prepare(
    session: Session,
    name: str,
    version: str | None,
    request: InferRequest,
    registry: RegistryCache | None = None,
    max_batch_size: int = 1,
) -> Prepared:
    """Resolve the version and check the request against its signature (400 before enqueue)."""
    found = (
        registry.served(session, name, version) if registry else read_served(session, name, version)
    )
    if found.status == "pending":  # validation is under way: worth retrying shortly
        error = Unavailable(f"version {found.version} of model {name!r} is still being validated")
        error.retry_after = 5
        raise error
    if found.status != "ready":  # failed: retrying cannot help
        reason = f": {found.error}" if found.error else ""
        raise Conflict(f"version {found.version} of model {name!r} is {found.status}{reason}")
    validate(request, found.signature)
    inputs = {tensor.name: pack(tensor.array, tensor.datatype) for tensor in request.inputs}
    outputs = [output.name for output in request.outputs] if request.outputs else None
    payload = {"model": name, "version": found.version, "inputs": inputs, "outputs": outputs}
    shapes = " ".join(f"{t.name}:{t.datatype}{list(t.array.shape)}" for t in request.inputs)
    rows = {t.array.shape[0] if t.array.ndim else 0 for t in request.inputs}
    max_rows = (found.max_batch_size or max_batch_size) if found.batchable else 1
    return Prepared(name, found.version, payload, request, shapes, max(rows | {1}), max_rows)


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
    payload = {**prepared.payload, "deadline": deadline, "job_id": task_id, **trace_fields()}
    argsrepr = f"({prepared.model!r}, {prepared.version!r}, {prepared.shapes!r})"
    return publish(
        celery, watch, INFER_TASK, payload, prepared.model, deadline, max_queue_length,
        priority=priority, task_id=task_id, argsrepr=argsrepr,
    )  # fmt: skip


def publish(
    celery: Celery,
    watch: QueueWatch,
    task: str,
    payload: dict[str, Any],
    model: str,
    deadline: float | None,
    max_queue_length: int,
    *,
    priority: int,
    argsrepr: str,
    task_id: str | None = None,
    ignore_result: bool = False,
) -> str:
    """Send task with payload to model's queue; the task id. 503 if no worker, 429 if full."""
    queue = model_queue(model)
    if not watch.serves(queue):
        error = Unavailable(f"no live worker serves model {model!r} (queue {queue})")
        error.retry_after = 5
        raise error
    if watch.full(queue, max_queue_length):
        rate_limited("queue_full")
        raise RateLimited(f"the queue of model {model!r} is full ({max_queue_length} jobs waiting)")
    try:
        result = celery.send_task(
            task,
            args=[payload],
            queue=queue,
            task_id=task_id,
            priority=MAX_PRIORITY - check_priority(priority),  # on Redis 0 goes first
            expires=deadline,
            argsrepr=argsrepr,
            kwargsrepr="{}",
            ignore_result=ignore_result,  # no result-backend subscription for the job
        )
    except Exception as exc:
        reason = f"could not queue the request: the broker did not answer ({exc})"
        raise Unavailable(reason) from None
    watch.sent(queue)
    return result.id


def wait(celery: Celery, task_id: str, deadline: float) -> dict[str, Any]:
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


def answer(reply: Any, task_id: str) -> dict[str, Any]:
    """A worker's reply, or the error it carries as the matching FarmError."""
    if not isinstance(reply, dict):
        raise error_for_status(500, f"the job ended without a result ({reply!r})")
    if not reply.get("ok"):
        error = error_for_status(int(reply.get("status", 500)), str(reply.get("error")))
        error.extra = {"job_id": task_id}
        raise error
    return reply
