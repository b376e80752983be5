"""Durable job records: created when a job is queued, updated as it runs and ends."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from inference_farm.errors import Conflict
from inference_farm.registry import changes
from inference_farm.registry.db import utcnow
from inference_farm.registry.models import FINISHED_JOB_STATUSES, Job

OVERDUE = "the job expired before a worker could run it: its timeout passed while it was queued"


def add_job(session: Session, kind: str, model_name: str, queue: str, **fields: object) -> Job:
    """Create and commit a queued job record."""
    job = Job(kind=kind, model_name=model_name, queue=queue, status="queued", **fields)
    session.add(job)
    session.commit()
    return job


def start_job(session: Session, job_id: str) -> Job | None:
    """Mark a job running, unless it already ended; None when there is no such job."""
    job = session.get(Job, job_id)
    if job is None or job.status in FINISHED_JOB_STATUSES:
        return None
    job.status, job.started_at = "running", utcnow()
    session.commit()
    return job


def finish_job(session: Session, job_id: str, status: str, error: str | None = None) -> None:
    """Record how a job ended."""
    job = session.get(Job, job_id)
    if job is None:
        return
    job.status, job.error, job.finished_at = status, error, utcnow()
    session.commit()


def drop_job(session: Session, job: Job) -> None:
    """Delete a job record that was never queued (its publish failed)."""
    session.delete(job)
    session.commit()


def begin_attempt(session: Session, job_id: str, attempts: int) -> str | None:
    """Mark a job running on its attempts-th delivery; the status it ended with instead, if
    it was cancelled or ended before (then it must not run); None for no such job."""
    job = session.get(Job, job_id)
    if job is None:
        return None
    if job.status in FINISHED_JOB_STATUSES:
        return job.status
    job.status, job.started_at, job.attempts = "running", utcnow(), attempts
    session.commit()
    return None


def record_outcome(
    session: Session, job_id: str, error: str | None = None, expired: bool = False
) -> None:
    """Record that a job succeeded (no error), failed or expired, unless it ended already
    (cancelled meanwhile, or a redelivered copy): the first outcome stands."""
    job = session.get(Job, job_id)
    if job is None or job.status in FINISHED_JOB_STATUSES:
        return
    job.status = "succeeded" if error is None else ("expired" if expired else "failed")
    job.error, job.finished_at = error, utcnow()
    session.commit()


def expire_overdue(session: Session, job_id: str | None = None) -> int:
    """Mark expired the jobs (or the one job) still queued past their timeout, which no
    worker took in time; how many. A worker that takes one later drops it unrun anyway."""
    now = utcnow()
    overdue = update(Job).where(Job.status == "queued", Job.deadline_at < now)
    if job_id is not None:
        overdue = overdue.where(Job.id == job_id)
    expired = session.execute(
        overdue.values(status="expired", error=OVERDUE, finished_at=now).returning(
            Job.id, Job.model_name, Job.api_key_id
        ),
        execution_options={"synchronize_session": False},
    ).all()
    changes.note(session, [changes.job_change(i, m, "expired", k) for i, m, k in expired])
    session.commit()
    return len(expired)


def cancel_job(session: Session, job: Job) -> None:
    """Mark a job that has not ended cancelled; Conflict if it ended."""
    if job.status in FINISHED_JOB_STATUSES:
        raise Conflict(f"job {job.id} already ended: it is {job.status}")
    job.status, job.error, job.finished_at = "cancelled", "cancelled by request", utcnow()
    session.commit()


def find_jobs(
    session: Session,
    limit: int,
    offset: int,
    status: str | None = None,
    model: str | None = None,
    batch_id: str | None = None,
    kind: str = "infer",
    owner: int | None = None,
) -> tuple[int, list[Job]]:
    """The number of matching jobs of a kind (and owner key), and one page, newest first."""
    query = select(Job).where(Job.kind == kind)
    if owner is not None:
        query = query.where(Job.api_key_id == owner)
    if status:
        query = query.where(Job.status == status)
    if model:
        query = query.where(Job.model_name == model)
    if batch_id:
        query = query.where(Job.batch_id == batch_id)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    page = query.order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset)
    return int(total), list(session.scalars(page))


def count_unfinished(session: Session, api_key_id: int) -> int:
    """Jobs of a key that are queued or running."""
    query = select(func.count()).where(
        Job.api_key_id == api_key_id, Job.status.in_(("queued", "running"))
    )
    return int(session.scalar(query) or 0)


def count_by_status(session: Session) -> list[tuple[str, str, str, int]]:
    """(kind, model, status, jobs) for every combination that has job records."""
    columns = (Job.kind, Job.model_name, Job.status)
    query = select(*columns, func.count()).group_by(*columns)
    return [(kind, model, status, int(n)) for kind, model, status, n in session.execute(query)]
