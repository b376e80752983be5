"""Worker side of an infer job: deadline, delivery cap, job record, one onnxruntime run."""

from __future__ import annotations

import logging
import time
from typing import Any

from inference_farm.errors import FarmError, InvalidInput
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
    reply = _execute(state, payload, task_id)
    report_job(state.settings.worker_device, payload, task_id, reply, received)
    return reply


def _execute(state: WorkerState, payload: dict[str, Any], task_id: str) -> dict[str, Any]:
    refused = _admit(state, payload, task_id)
    if refused is not None:
        return refused
    try:
        reply = run(state, payload)
    except FarmError as exc:
        reply = failure(exc.message, exc.status)
    except Exception as exc:  # onnxruntime's errors: the inputs do not suit the model
        from inference_farm.runtime.inspect import ort_message

        reply = failure(f"the model could not run on these inputs: {ort_message(exc)}", 400)
    return reply


def _admit(state: WorkerState, payload: dict[str, Any], task_id: str) -> dict | None:
    """A refusal when the job is past its deadline, cancelled, or over its delivery cap."""
    deadline = payload.get("deadline")
    if deadline is not None and time.time() > deadline:
        return {**failure("the job expired before a worker could run it", 504), "expired": True}
    deliveries = _count_delivery(state, task_id)
    cap = state.settings.max_deliveries
    if deliveries > cap:
        return failure(
            f"giving up: the worker running this job stopped {deliveries - 1} times "
            f"(max_deliveries is {cap})",
            500,
        )
    job_id = payload.get("job_id")
    if job_id and not _start(state, job_id, deliveries):
        return {**failure("the job was cancelled", 409), "cancelled": True}
    return None


def _count_delivery(state: WorkerState, task_id: str) -> int:
    key = DELIVERY_KEY.format(task_id)
    with state.redis.pipeline() as pipe:
        count, _ = pipe.incr(key).expire(key, DELIVERY_TTL_S).execute()
    return int(count)


def _start(state: WorkerState, job_id: str, deliveries: int) -> bool:
    """Mark the job running; False if it was cancelled (or ended) meanwhile."""
    session = state.db.session()
    try:
        job = session.get(Job, job_id)
        if job is None:
            return True
        if job.status in FINISHED_JOB_STATUSES:
            return False
        job.status, job.started_at, job.attempts = "running", utcnow(), deliveries
        session.commit()
        return True
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
        if job is None or job.status == "cancelled":
            return
        if reply.get("ok"):
            job.status, job.error = "succeeded", None
        else:
            job.status = "expired" if reply.get("expired") else "failed"
            job.error = reply["error"]
        job.finished_at = utcnow()
        session.commit()
    finally:
        state.db.remove()


def run(state: WorkerState, payload: dict[str, Any]) -> dict[str, Any]:
    """Decode the inputs, run the session, pack the outputs."""
    from inference_farm.runtime.codec import for_onnxruntime, pack_outputs, unpack

    version, session, signature = state.serving(payload["model"], payload["version"])
    decoding = time.perf_counter()
    feeds = {name: for_onnxruntime(unpack(p), name) for name, p in payload["inputs"].items()}
    names = [arg.name for arg in session.get_outputs()]
    wanted = payload.get("outputs") or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise InvalidInput(f"unknown output {unknown[0]!r}: the model has {', '.join(names)}")
    started = time.perf_counter()
    results = session.run(wanted, feeds)
    encoding = time.perf_counter()
    outputs = pack_outputs(dict(zip(wanted, results, strict=True)), signature.get("outputs", []))
    timings = {
        "decode_ms": (started - decoding) * 1000,
        "compute_ms": (encoding - started) * 1000,
        "encode_ms": (time.perf_counter() - encoding) * 1000,
    }
    return {"ok": True, "model_version": version, "outputs": outputs, **timings}
