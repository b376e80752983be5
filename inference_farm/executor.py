"""Worker side of infer jobs: deadlines, delivery cap, job record, batched onnxruntime runs."""

from __future__ import annotations

import logging
import time
from typing import Any

from inference_farm.errors import FarmError, InvalidInput
from inference_farm.registry.cached import Served
from inference_farm.registry.db import utcnow
from inference_farm.registry.models import FINISHED_JOB_STATUSES, Job
from inference_farm.worker_metrics import report_job
from inference_farm.worker_state import WorkerState

log = logging.getLogger(__name__)
DELIVERY_KEY = "farm:deliveries:{}"
DELIVERY_TTL_S = 7 * 86400


def failure(message: str, status: int) -> dict[str, Any]:
    """The reply of a job that did not produce outputs."""
    return {"ok": False, "error": message, "status": status}


def execute(state: WorkerState, payload: dict[str, Any], task_id: str) -> dict[str, Any]:
    """Run one infer payload and return the reply; never raises. Logs and counts the job."""
    received = time.time()
    reply = _admit(state, payload, task_id)
    if reply is None:
        reply = run_many(state, payload["model"], payload["version"], [payload])[0]
    report_job(state.settings.worker_device, payload, task_id, reply, received)
    return reply


def execute_batch(state: WorkerState, payload: dict[str, Any], task_id: str) -> dict[str, Any]:
    """Run a coalesced payload of several requests; one reply each, in order; never raises."""
    received = time.time()
    requests = payload.get("requests") or []
    refused = _cap_refusal(state, _count_delivery(state, task_id))
    if refused is not None:
        replies = [refused for _ in requests]
    else:
        replies = run_many(state, payload["model"], payload["version"], requests)
    where = {"model": payload.get("model"), "version": payload.get("version")}
    for item, reply in zip(requests, replies, strict=True):
        report_job(state.settings.worker_device, {**item, **where}, task_id, reply, received)
    return refused or {"ok": True, "replies": replies}


def _admit(state: WorkerState, payload: dict[str, Any], task_id: str) -> dict | None:
    """A refusal when the job is past its deadline, cancelled, or over its delivery cap."""
    deadline = payload.get("deadline")
    if deadline is not None and time.time() > deadline:
        return {**failure("the job expired before a worker could run it", 504), "expired": True}
    deliveries = _count_delivery(state, task_id)
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


def _count_delivery(state: WorkerState, task_id: str) -> int:
    key = DELIVERY_KEY.format(task_id)
    with state.redis.pipeline() as pipe:
        count, _ = pipe.incr(key).expire(key, DELIVERY_TTL_S).execute()
    return int(count)


def _start(state: WorkerState, job_id: str, deliveries: int) -> str | None:
    """Mark the job running; the status it ended with, if it was cancelled or ended before."""
    session = state.db.session()
    try:
        job = session.get(Job, job_id)
        if job is None:
            return None
        if job.status in FINISHED_JOB_STATUSES:
            return job.status
        job.status, job.started_at, job.attempts = "running", utcnow(), deliveries
        session.commit()
        return None
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
    session = state.db.session()
    try:
        job = session.get(Job, job_id)
        if job is None or job.status in FINISHED_JOB_STATUSES:
            return  # cancelled meanwhile, or already ended: the first outcome stands
        if reply.get("ok"):
            job.status, job.error = "succeeded", None
        else:
            job.status = "expired" if reply.get("expired") else "failed"
            job.error = reply["error"]
        job.finished_at = utcnow()
        session.commit()
    finally:
        state.db.remove()


def run_many(
    state: WorkerState, model: str, version: str, items: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Replies to requests for one model version, stacked where the batcher can."""
    try:
        found, session = state.serving(model, version)
    except FarmError as exc:
        return [failure(exc.message, exc.status) for _ in items]
    except Exception as exc:
        log.exception("loading %s %s failed", model, version)
        return [failure(f"the model could not be loaded: {exc}", 500) for _ in items]
    from inference_farm.runtime.batcher import Request, run_each, stackable

    begun = [_begin(session, item) for item in items]
    requests = [request for request, _ in begun if isinstance(request, Request)]
    batcher = state.batcher_for(found)
    stacked = [r for r in requests if batcher is not None and stackable(r)]
    if stacked:
        batcher.submit_all(stacked)
    run_each([r for r in requests if r not in stacked])
    return [_finish(found, request, decode_s) for request, decode_s in begun]


def _begin(session: Any, item: dict[str, Any]) -> tuple[Any, float]:
    """The decoded request, or the reply of one that cannot run; the time decoding took."""
    from inference_farm.runtime.batcher import Request

    deadline = item.get("deadline")
    if deadline is not None and time.time() > deadline:
        return {**failure("the job expired before a worker could run it", 504), "expired": True}, 0
    decoding = time.perf_counter()
    try:
        request = Request(session, *_decode(session, item), deadline=deadline)
    except Exception as exc:
        return _failed_run(exc), time.perf_counter() - decoding
    return request, time.perf_counter() - decoding


def _decode(session: Any, item: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The request's feeds for onnxruntime and the outputs it wants."""
    from inference_farm.runtime.codec import for_onnxruntime, unpack

    feeds = {name: for_onnxruntime(unpack(p), name) for name, p in item["inputs"].items()}
    names = [arg.name for arg in session.get_outputs()]
    wanted = item.get("outputs") or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise InvalidInput(f"unknown output {unknown[0]!r}: the model has {', '.join(names)}")
    return feeds, list(wanted)


def _finish(found: Served, begun: Any, decode_s: float) -> dict[str, Any]:
    """The reply of a request that ran: its packed outputs and timings, or its error."""
    from inference_farm.runtime.codec import pack_outputs

    if isinstance(begun, dict):
        return begun
    try:
        outcome = begun.future.result()
        encoding = time.perf_counter()
        outputs = dict(zip(outcome.wanted, outcome.outputs, strict=True))
        packed = pack_outputs(outputs, found.signature.get("outputs", []))
    except Exception as exc:
        return _failed_run(exc)
    return {
        "ok": True,
        "model_version": found.version,
        "outputs": packed,
        "decode_ms": decode_s * 1000,
        "compute_ms": outcome.compute_s * 1000,
        "encode_ms": (time.perf_counter() - encoding) * 1000,
        "batch_size": outcome.batch_size,
    }


def _failed_run(exc: Exception) -> dict[str, Any]:
    """The reply of a request whose inputs the model could not take."""
    from inference_farm.runtime.batcher import Expired
    from inference_farm.runtime.inspect import ort_message

    if isinstance(exc, FarmError):
        return failure(exc.message, exc.status)
    if isinstance(exc, Expired):
        return {**failure("the job expired before a worker could run it", 504), "expired": True}
    return failure(f"the model could not run on these inputs: {ort_message(exc)}", 400)
