"""Thin Celery tasks and worker control commands over the registry, store and runtime."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from celery import current_app, shared_task, signals
from celery.exceptions import Ignore
from celery.worker.control import control_command

from inference_farm.broker import heartbeat
from inference_farm.broker.names import (
    ALL_MODELS_SETTING,
    INFER_BATCH_TASK,
    INFER_TASK,
    PING_TASK,
    VALIDATE_TASK,
    model_queue,
)
from inference_farm.errors import FarmError
from inference_farm.protocol import messages
from inference_farm.registry import Database, catalog
from inference_farm.registry.jobs import finish_job, start_job
from inference_farm.registry.migrate import ensure_current
from inference_farm.registry.models import ModelVersion
from inference_farm.worker.state import WorkerState

log = logging.getLogger(__name__)
_state: WorkerState | None = None


def worker_state() -> WorkerState:
    """The state of this worker process, created on first use."""
    global _state
    if _state is None:
        _state = WorkerState.create(current_app.conf.farm_settings)
    return _state


def registry_db() -> Database:
    """The registry of this worker process."""
    return worker_state().db


@signals.worker_process_init.connect
def _forget_parent_state(**_kwargs: Any) -> None:
    # A forked child must never share the parent's pooled connections or sessions.
    global _state
    if _state is not None:
        _state.db.dispose()
        _state = None


@signals.task_postrun.connect
def _after_task(task: Any = None, args: Any = None, retval: Any = None, **_kw: Any) -> None:
    # Runs after the result is stored, so a job record never says succeeded before it is.
    if task is not None and task.name == INFER_TASK and args:
        from inference_farm.worker.admission import record

        job_id = args[0].get("job_id") if isinstance(args[0], dict) else None
        record(worker_state(), job_id, retval)
    if _state is not None:
        _state.db.remove()


@shared_task(name=PING_TASK)
def ping() -> dict[str, Any]:
    """Answer with this worker's identity once its registry is reachable and current."""
    ensure_current(registry_db())
    return {"hostname": socket.gethostname(), "pid": os.getpid()}


def _inspect(state: WorkerState, record: ModelVersion) -> dict[str, Any]:
    from inference_farm.runtime.inspect import inspect_model

    path, _size = state.model_path(record)  # an archive is unpacked here, checked as it goes
    root = state.archive_root(record)
    warmup = state.samples_path(record.warmup_sha256) if record.warmup_sha256 else None
    return inspect_model(path, state.settings.validate_timeout, warmup, root)


@shared_task(name=VALIDATE_TASK)
def validate(version_id: int, job_id: str | None = None) -> dict[str, Any]:
    """Load an uploaded version, read its signature, run it once; mark it ready or failed."""
    state = worker_state()
    session = state.db.session()
    record = session.get(ModelVersion, version_id)
    if record is None or record.status != "pending":
        return {"skipped": f"version {version_id} is not pending"}
    if job_id:
        start_job(session, job_id)
    try:
        found = _inspect(state, record)
    except FarmError as exc:
        return _failed(session, record, job_id, exc.message)
    except Exception as exc:
        log.exception("validation of %s %s crashed", record.model.name, record.version)
        return _failed(session, record, job_id, f"validation failed unexpectedly: {exc}")
    kept = ("signature", "batchable", "load_time_ms", "memory_bytes", "warnings", "model_info")
    fields = {key: found.get(key) for key in kept}
    if record.artifact_format != "onnx":
        fields["size_bytes"] = found["size_bytes"]  # the model with its external data
    _await_consumer(state, record.model.name)
    catalog.set_result(session, record.id, "ready", error=None, **fields)
    if job_id:
        finish_job(session, job_id, "succeeded")
    log.info("model %s %s is ready", record.model.name, record.version)
    return {"status": "ready"}


def _await_consumer(state: WorkerState, name: str) -> None:
    """Wait until a live worker consumes name's queue, so that ready means servable."""
    from inference_farm.worker.resync import wait_served

    try:
        wait_served(current_app, state.redis, name)
    except Exception as exc:  # the broker is down: requests will say so themselves
        log.warning("could not check which workers serve %s: %s", name, exc)


def _failed(session: Any, record: ModelVersion, job_id: str | None, reason: str) -> dict:
    log.warning("model %s %s failed validation: %s", record.model.name, record.version, reason)
    catalog.set_result(session, record.id, "failed", error=reason)
    if job_id:
        finish_job(session, job_id, "failed", reason)
    return {"status": "failed", "error": reason}


@shared_task(name=INFER_TASK, bind=True)
def infer(self: Any, payload: Any) -> dict[str, Any]:
    """Run one inference request on this worker's session for its model version."""
    from inference_farm.worker.admission import execute

    try:
        job = messages.decode(messages.InferJob, payload)
    except FarmError as exc:  # a message no API of this farm sends: answered, never run
        return messages.encode(messages.failure(exc.message, exc.status))
    reply = execute(worker_state(), job, self.request.id, _redelivered(self))
    if reply.duplicate:  # keep the stored result of the run that counted
        raise Ignore()
    return messages.encode(reply)


@shared_task(name=INFER_BATCH_TASK, bind=True, ignore_result=True)
def infer_batch(self: Any, payload: Any) -> None:
    """Run several coalesced requests for one model version; push the replies to reply_to."""
    from inference_farm.broker.replies import send_reply
    from inference_farm.worker.admission import execute_batch

    state = worker_state()
    try:
        job = messages.decode_batch(payload)
    except FarmError as exc:  # answered where it asks to be, if it says where
        reply_to = payload.get("reply_to") if isinstance(payload, dict) else None
        log.warning("refused a coalesced job %s: %s", self.request.id, exc.message)
        if isinstance(reply_to, str) and reply_to:
            failed = messages.BatchReply(ok=False, error=exc.message, status=exc.status)
            send_reply(state.redis, reply_to, self.request.id, failed)
        return
    reply = execute_batch(state, job, self.request.id, _redelivered(self))
    send_reply(state.redis, job.reply_to, self.request.id, reply)


def _redelivered(task: Any) -> bool:
    """Whether the broker delivered the running task's message before (kombu's flag)."""
    return bool((task.request.delivery_info or {}).get("redelivered"))


def _serves(consumer: Any, name: str) -> bool:
    queues = {queue.name for queue in consumer.task_consumer.queues}
    return bool(consumer.app.conf.get(ALL_MODELS_SETTING)) or model_queue(name) in queues


@control_command(args=[("name", str), ("version", str)], signature="<name> [version]")
def farm_load(state: Any, name: str, version: str | None = None) -> dict[str, Any]:
    """Warm a model version in this worker's cache, if this worker serves the model."""
    if not _serves(state.consumer, name):
        return {"skipped": f"this worker does not serve {name!r}"}
    try:
        loaded, _session = worker_state().session_for(name, version)
    except FarmError as exc:
        return {"error": exc.message, "status": exc.status}
    finally:
        worker_state().db.remove()
    return {"ok": f"loaded {name} {loaded}"}


@control_command(args=[("name", str), ("version", str)], signature="<name> [version]")
def farm_evict(state: Any, name: str, version: str | None = None) -> dict[str, Any]:
    """Unload a model version (or every version) from this worker's cache."""
    return {"ok": f"evicted {worker_state().evict(name, version)} session(s)"}


@control_command(args=[("name", str)], signature="<name>")
def farm_model_added(state: Any, name: str) -> dict[str, Any]:
    """Start consuming a new model's queue, if this worker serves all models."""
    if not state.consumer.app.conf.get(ALL_MODELS_SETTING):
        return {"skipped": "not an all-models worker"}
    state.consumer.add_task_queue(model_queue(name))
    heartbeat.soon()  # so that the API sees the new queue served before the next beat
    return {"ok": f"consuming {model_queue(name)}"}


@control_command()
def farm_cache(state: Any) -> dict[str, Any]:
    """The sessions this worker has loaded, and its cache counters."""
    return worker_state().cache_report()
