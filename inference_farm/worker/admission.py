"""Worker side of infer jobs: deadlines, delivery cap, job record; groups.py runs them."""

from __future__ import annotations

import logging
import time
from typing import Any

from inference_farm.broker.names import DELIVERY_KEY
from inference_farm.errors import InvalidInput
from inference_farm.protocol.messages import (
    BatchJob,
    BatchReply,
    InferJob,
    Reply,
    decode,
    failure,
)
from inference_farm.registry.jobs import begin_attempt, record_outcome
from inference_farm.worker.groups import expired, run_groups
from inference_farm.worker.metrics import report_job
from inference_farm.worker.state import WorkerState

log = logging.getLogger(__name__)
DELIVERY_TTL_S = 7 * 86400


def execute(state: WorkerState, job: InferJob, task_id: str, redelivered: bool = False) -> Reply:
    """Run one infer job and return the reply; never raises. Logs and counts the job.

    redelivered: the broker delivered this message before (its redelivered flag).
    """
    received = time.time()
    reply = _admit(state, job, task_id, redelivered)
    if reply is None:
        reply = run_groups(state, job.model, job.version, [job.group()])[0]
    report_job(state.settings.worker_device, job.model, job.version, job.group().requests[0],
               task_id, reply, received)  # fmt: skip
    return reply


def execute_batch(
    state: WorkerState, job: BatchJob, task_id: str, redelivered: bool = False
) -> BatchReply:
    """Run a coalesced job: its groups of stacked requests; one reply per request, in order;
    never raises."""
    received = time.time()
    metas = [meta for group in job.groups for meta in group.requests]
    refused = _cap_refusal(state, _count_delivery(state, task_id, redelivered))
    if refused is not None:
        replies = [refused for _ in metas]
    else:
        replies = run_groups(state, job.model, job.version, job.groups, False)
    device = state.settings.worker_device
    for meta, reply in zip(metas, replies, strict=True):
        report_job(device, job.model, job.version, meta, task_id, reply, received)
    if refused is not None:
        return BatchReply(ok=False, error=refused.error, status=refused.status)
    return BatchReply(ok=True, replies=replies)


def _admit(state: WorkerState, job: InferJob, task_id: str, redelivered: bool) -> Reply | None:
    """A refusal when the job is past its deadline, cancelled, or over its delivery cap."""
    if job.deadline is not None and time.time() > job.deadline:
        return expired()
    deliveries = _count_delivery(state, task_id, redelivered)
    ended = _start(state, job.job_id, deliveries) if job.job_id else None
    if ended == "cancelled":
        return failure("the job was cancelled", 409, cancelled=True)
    if ended is not None:  # a copy of a job that already ran, redelivered: drop it unrun
        return failure(f"the job already ended ({ended})", 409, duplicate=True)
    return _cap_refusal(state, deliveries)


def _cap_refusal(state: WorkerState, deliveries: int) -> Reply | None:
    """A refusal when a message was delivered more than max_deliveries times."""
    cap = state.settings.max_deliveries
    if deliveries > cap:
        return failure(
            f"giving up: the worker running this job stopped {deliveries - 1} times "
            f"(max_deliveries is {cap})",
            500,
        )
    return None


def _count_delivery(state: WorkerState, task_id: str, redelivered: bool) -> int:
    """How many times the message has been delivered, this time included.

    Only redeliveries are counted in Redis: a first delivery costs no round trip.
    """
    if not redelivered:
        return 1
    key = DELIVERY_KEY.format(task_id)
    with state.redis.pipeline() as pipe:
        count, _ = pipe.incr(key).expire(key, DELIVERY_TTL_S).execute()
    return int(count) + 1


def _start(state: WorkerState, job_id: str, deliveries: int) -> str | None:
    """Mark the job running; the status it ended with, if it was cancelled or ended before."""
    try:
        return begin_attempt(state.db.session(), job_id, deliveries)
    finally:
        state.db.remove()


def record(state: WorkerState, job_id: str | None, reply: Any) -> None:
    """Write the outcome to the job record, unless the job was cancelled meanwhile.

    Called once the result is in the backend, so a job never reads as succeeded without it.
    reply is what the task returned: a Reply in its plain form.
    """
    if not job_id:
        return
    try:
        outcome = decode(Reply, reply)
    except InvalidInput:
        outcome = failure(f"the job ended without a result ({reply!r})", 500)
    error = None if outcome.ok else str(outcome.error)
    try:
        record_outcome(state.db.session(), job_id, error, outcome.expired)
    finally:
        state.db.remove()
