"""The client's errors: one class per kind of answer, each with the server's message."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx


class FarmClientError(Exception):
    """The server answered with an error (status 0: it could not be reached)."""

    def __init__(
        self, status: int, message: str, retry_after: float | None = None, job_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.retry_after, self.job_id = retry_after, job_id


class NotFound(FarmClientError):
    """404: no such model, version, job or key."""


class InvalidInput(FarmClientError):
    """400, 409, 413 or 422: the request is malformed or conflicts with the current state."""


class Unauthorized(FarmClientError):
    """401: no valid API key."""


class Forbidden(FarmClientError):
    """403: the key lacks the scope or the model."""


class RateLimited(FarmClientError):
    """429: over a rate limit or a full queue, after the retries ran out."""


class Timeout(FarmClientError):
    """504, or a client-side wait that ran out; job_id names the job when there is one."""


class Unavailable(FarmClientError):
    """503 or 502, or the server could not be reached (status 0), after the retries ran out."""


class JobFailed(FarmClientError):
    """A job ended failed, cancelled or expired; job is its record as the API shows it."""

    def __init__(self, message: str, job: dict[str, Any]) -> None:
        super().__init__(500, message, job_id=job.get("job_id"))
        self.job = job


class ResultExpired(JobFailed):
    """A job succeeded, but its result was dropped from the result backend."""


_CLASSES: dict[int, type[FarmClientError]] = {
    0: Unavailable, 400: InvalidInput, 401: Unauthorized, 403: Forbidden, 404: NotFound,
    409: InvalidInput, 413: InvalidInput, 422: InvalidInput, 429: RateLimited,
    502: Unavailable, 503: Unavailable, 504: Timeout,
}  # fmt: skip
RETRIED = (429, 503)
FIRST_BACKOFF, MAX_BACKOFF = 0.1, 5.0


def backoff(error: FarmClientError, attempt: int, started: float, budget: float) -> float | None:
    """Seconds to wait before retry attempt+1; None once the budget would be spent."""
    delay = max(FIRST_BACKOFF * 2**attempt, error.retry_after or 0.0)
    delay = min(delay, max(MAX_BACKOFF, error.retry_after or 0.0))
    if time.monotonic() - started + delay > budget:
        return None
    return delay


def error_for(
    status: int, message: str, retry_after: float | None = None, job_id: str | None = None
) -> FarmClientError:
    """The FarmClientError subclass of an HTTP status, with the server's message."""
    return _CLASSES.get(status, FarmClientError)(status, message, retry_after, job_id)


def error_of(response: httpx.Response) -> FarmClientError:
    """The typed error of an error answer: the server's message, Retry-After and job id."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = str(body.get("error") or body.get("message") or body)
        job_id = body.get("job_id")
    else:
        message = response.text.strip() or response.reason_phrase
        job_id = None
    retry_after = _seconds(response.headers.get("Retry-After"))
    return error_for(response.status_code, message, retry_after, job_id)


def _seconds(value: str | None) -> float | None:
    """A Retry-After header in seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
