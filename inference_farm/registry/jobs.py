"""Durable job records: created when a job is queued, updated as it runs and ends."""

from __future__ import annotations

from sqlalchemy.orm import Session

from inference_farm.registry.db import utcnow
from inference_farm.registry.models import FINISHED_JOB_STATUSES, Job


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
