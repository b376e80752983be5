"""/v1/jobs: submit inference jobs (one or a batch), poll them, list them, cancel them."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from typing import Any

from flask import request, url_for
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate

from inference_farm.api import enqueue
from inference_farm.api.auth import check_model, current_key, is_admin, scope
from inference_farm.api.context import farm
from inference_farm.api.metrics import note_model
from inference_farm.api.schemas import MAX_ID, model_name, text
from inference_farm.broker import control
from inference_farm.broker.names import model_queue
from inference_farm.errors import InvalidInput, NotFound, RateLimited
from inference_farm.protocol.codec import build_response, parse_document
from inference_farm.protocol.messages import Reply, decode
from inference_farm.registry.db import utcnow
from inference_farm.registry.jobs import (
    add_job,
    cancel_job,
    count_unfinished,
    drop_job,
    expire_overdue,
    find_jobs,
)
from inference_farm.registry.models import FINISHED_JOB_STATUSES, JOB_STATUSES, Job
from inference_farm.telemetry import request_ids
from inference_farm.telemetry.metrics import rate_limited

blp = Blueprint("jobs", __name__, url_prefix="/v1/jobs", description="Submit-and-poll jobs")
MAX_BATCH = 1000
MAX_TIMEOUT_S = 7 * 86400  # a job's timeout, at most a week
DEFAULT_PRIORITY = 4


class JobSubmit(Schema):
    """One inference job: a model, its inputs as in the Open Inference Protocol."""

    model = model_name(required=True)
    version = text(32)
    inputs = fields.List(fields.Dict(), required=True)
    outputs = fields.List(fields.Dict())
    parameters = fields.Dict()
    priority = fields.Integer(load_default=DEFAULT_PRIORITY, validate=validate.Range(0, 9))
    timeout = fields.Float(validate=validate.Range(0, MAX_TIMEOUT_S, min_inclusive=False))


class BatchSubmit(Schema):
    """Many jobs at once, grouped under one batch id."""

    requests = fields.List(
        fields.Nested(JobSubmit), required=True, validate=validate.Length(1, MAX_BATCH)
    )


class JobQuery(Schema):
    """Filters and page of a job listing."""

    status = fields.String(validate=validate.OneOf(JOB_STATUSES))
    model = text(64)
    batch_id = text(36)
    limit = fields.Integer(load_default=50, validate=validate.Range(1, 500))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, MAX_ID))


def _load(schema: Schema, body: Any) -> dict:
    try:
        return schema.load(body)
    except ValidationError as exc:
        raise InvalidInput(f"invalid request: {exc.messages}") from None


def _prepare(item: dict) -> tuple[enqueue.Prepared, dict]:
    check_model(item["model"])
    note_model(item["model"])
    document = {k: item[k] for k in ("inputs", "outputs", "parameters") if k in item}
    limit = farm().settings.max_tensor_elements
    parsed = parse_document(document, max_elements=limit)
    session = farm().db.session()
    return enqueue.prepare(session, item["model"], item.get("version"), parsed), item


def _enqueue(prepared: enqueue.Prepared, item: dict, batch_id: str | None) -> Job:
    context = farm()
    deadline = time.time() + item["timeout"] if "timeout" in item else None
    key = current_key()
    job = add_job(
        context.db.session(), "infer", prepared.model, model_queue(prepared.model),
        version=prepared.version, priority=item["priority"], batch_id=batch_id,
        api_key_id=key.id if key else None, request_id=request_ids.current(),
        deadline_at=dt.datetime.fromtimestamp(deadline, dt.timezone.utc) if deadline else None,
    )  # fmt: skip
    try:
        enqueue.submit(
            context.celery, context.queues, prepared, deadline,
            context.settings.max_queue_length, priority=item["priority"], task_id=job.id,
            need_worker=not context.settings.jobs_wait_for_workers,
        )  # fmt: skip
    except Exception:
        drop_job(context.db.session(), job)
        raise
    return job


def _ref(job: Job) -> dict[str, str]:
    return {"job_id": job.id, "status_url": url_for("jobs.job", job_id=job.id)}


@blp.route("", methods=["POST"])
@scope("jobs")
@blp.response(202)
def submit() -> Any:
    """Submit one job, or a batch as {"requests": [...]}; each job can be polled"""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise InvalidInput("the request body must be a JSON object")
    if "requests" not in body:
        prepared, item = _prepare(_load(JobSubmit(), body))
        _check_queued_cap(1)
        return _ref(_enqueue(prepared, item, None))
    items = _load(BatchSubmit(), body)["requests"]
    checked = []
    for index, item in enumerate(items):  # check every request before queueing any
        try:
            checked.append(_prepare(item))
        except InvalidInput as exc:
            raise InvalidInput(f"requests[{index}]: {exc.message}") from None
    _check_queued_cap(len(checked))
    batch_id = str(uuid.uuid4())
    jobs = [_ref(_enqueue(prepared, item, batch_id)) for prepared, item in checked]
    url = url_for("jobs.batch", batch_id=batch_id)
    return {"batch_id": batch_id, "status_url": url, "jobs": jobs}


def _owner() -> int | None:
    """The key whose jobs the caller may see; None for an admin, who sees all."""
    key = current_key()
    return None if key is None or is_admin() else key.id


def _check_queued_cap(adding: int) -> None:
    """RateLimited when the caller's key would have more unfinished jobs than allowed."""
    key = current_key()
    cap = key and (key.max_queued_jobs or farm().settings.max_queued_jobs_per_key)
    if not cap:
        return
    pending = count_unfinished(farm().db.session(), key.id)
    if pending + adding > cap:
        rate_limited("jobs_per_key")
        raise RateLimited(f"this key has {pending} unfinished jobs; it may have at most {cap}")


def _job_or_404(job_id: str) -> Job:
    session = farm().db.session()
    job = session.get(Job, job_id)
    owner = _owner()
    # Another key's job reads as missing: its existence is not the caller's business.
    if job is None or job.kind != "infer" or (owner is not None and job.api_key_id != owner):
        raise NotFound(f"job {job_id!r} not found")
    if job.status == "queued" and job.deadline_at and job.deadline_at < utcnow():
        expire_overdue(session, job.id)  # its timeout passed before any worker took it
        session.refresh(job)
    return job


def describe(job: Job, with_result: bool = False) -> dict[str, Any]:
    """A job as the API shows it; with its result when it succeeded and one is asked for."""
    shown = {
        "job_id": job.id, "batch_id": job.batch_id, "model": job.model_name,
        "version": job.version, "status": job.status, "priority": job.priority,
        "attempts": job.attempts, "error": job.error, "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at), "finished_at": _iso(job.finished_at),
    }  # fmt: skip
    if with_result and job.status == "succeeded":
        shown.update(_result(job))
    return shown


def _iso(moment: Any) -> str | None:
    return moment.isoformat() if moment else None


def _result(job: Job) -> dict[str, Any]:
    context = farm()
    stored = context.celery.AsyncResult(job.id).result
    reply = decode(Reply, stored) if isinstance(stored, dict) else None
    if reply is None or not reply.ok:
        ttl = context.settings.result_expires
        return {"result": None, "result_expired": True,
                "message": f"the result has expired: results are kept {ttl} seconds"}  # fmt: skip
    version, outputs = str(reply.model_version), reply.outputs or {}
    body, _ = build_response(job.model_name, version, None, outputs, None)
    return {"result": json.loads(body), "result_expired": False}


@blp.route("/<job_id>", methods=["GET"])
@scope("jobs")
def job(job_id: str) -> Any:
    """A job's status, timings, and result or error"""
    return describe(_job_or_404(job_id), with_result=True)


@blp.route("/<job_id>", methods=["DELETE"])
@scope("jobs")
def cancel(job_id: str) -> Any:
    """Cancel a job: a queued one never runs, a running one's result is discarded"""
    context = farm()
    record = _job_or_404(job_id)
    cancel_job(context.db.session(), record)
    control.call(context.celery, "revoke", job_id)
    context.celery.AsyncResult(job_id).forget()
    return describe(record)


@blp.route("", methods=["GET"])
@scope("jobs")
@blp.arguments(JobQuery, location="query")
def list_jobs(query: dict) -> Any:
    """Jobs, newest first, filtered by status, model or batch"""
    expire_overdue(farm().db.session())
    total, found = find_jobs(farm().db.session(), owner=_owner(), **query)
    jobs = [describe(job) for job in found]
    return {"jobs": jobs, "total": total, "limit": query["limit"], "offset": query["offset"]}


@blp.route("/batches/<batch_id>", methods=["GET"])
@scope("jobs")
def batch(batch_id: str) -> Any:
    """A batch as a whole: how many of its jobs are in each status"""
    expire_overdue(farm().db.session())
    total, found = find_jobs(
        farm().db.session(), batch_id=batch_id, limit=MAX_BATCH, offset=0, owner=_owner()
    )
    if total == 0:
        raise NotFound(f"batch {batch_id!r} not found")
    counts: dict[str, int] = {}
    for one in found:
        counts[one.status] = counts.get(one.status, 0) + 1
    done = all(one.status in FINISHED_JOB_STATUSES for one in found)
    return {"batch_id": batch_id, "total": total, "counts": counts, "done": done,
            "jobs": [describe(one) for one in found]}  # fmt: skip
