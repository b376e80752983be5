"""Worker side of infer jobs: deadlines, delivery cap, job record; runner.py runs them."""

from __future__ import annotations

import logging
import time
from typing import Any

from inference_farm.broker.names import DELIVERY_KEY
from inference_farm.registry.jobs import begin_attempt, record_outcome
from inference_farm.worker.groups import expired, failure, group_of, run_groups
from inference_farm.worker.metrics import report_job
from inference_farm.worker.state import WorkerState

log = logging.getLogger(__name__)
DELIVERY_TTL_S = 7 * 86400


def execute(
    state: WorkerState, payload: dict[str, Any], task_id: str, redelivered: bool = False
) -> dict[str, Any]:
    """Run one infer payload and return the reply; never raises. Logs and counts the job.

    redelivered: the broker delivered this message before (its redelivered flag).
    """
    received = time.time()
    reply = _admit(state, payload, task_id, redelivered)
    if reply is None:
        reply = run_groups(state, payload["model"], payload["version"], [group_of(payload)])[0]
    report_job(state.settings.worker_device, payload, task_id, reply, received)
    return reply


def execute_batch(
    state: WorkerState, payload: dict[str, Any], task_id: str, redelivered: bool = False
) -> dict[str, Any]:
    """Run a coalesced payload: its groups of stacked requests (or, from an API of an earlier
    release, its list of requests); one reply per request, in order; never raises."""
    received = time.time()
    groups = payload.get("groups")
    if not isinstance(groups, list):
        groups = [group_of(item) for item in payload.get("requests") or []]
    metas = [meta for group in groups for meta in group.get("requests") or []]
    refused = _cap_refusal(state, _count_delivery(state, task_id, redelivered))
    if refused is not None:
        replies = [refused for _ in metas]
    else:
        replies = run_groups(state, payload["model"], payload["version"], groups, False)
    where = {"model": payload.get("model"), "version": payload.get("version")}
    for meta, reply in zip(metas, replies, strict=True):
        report_job(state.settings.worker_device, {**meta, **where}, task_id, reply, received)
    return refused or {"ok": True, "replies": replies}


def _admit(
    state: WorkerState, payload: dict[str, Any], task_id: str, redelivered: bool
) -> dict | None:
    """A refusal when the job is past its deadline, cancelled, or over its delivery cap."""
    deadline = payload.get("deadline")
    if deadline is not None and time.time() > deadline:
        return expired()
    deliveries = _count_delivery(state, task_id, redelivered)
    job_id = payload.get("job_id")
    ended = _start(state, job_id, deliveries) if job_id else None
    if ended == "cancelled":
        return {**failure("the job was cancelled", 409), "cancelled": True}
    if ended is not None:  # a copy of a job that already ran, redelivered: drop it unrun
        return {**failure(f"the job already ended ({ended})", 409), "duplicate": True}
    return _cap_refusal(state, deliveries)


def _cap_refusal(state: WorkerState, deliveries: int) -> dict | None:
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
    """
    if not isinstance(reply, dict):
        reply = failure(f"the job ended without a result ({reply!r})", 500)
    if not job_id:
        return
    error = None if reply.get("ok") else str(reply["error"])
    try:
        record_outcome(state.db.session(), job_id, error, bool(reply.get("expired")))
    finally:
        state.db.remove()
