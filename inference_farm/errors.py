"""One exception tree for the farm; every error knows its HTTP status."""

from __future__ import annotations


class FarmError(Exception):
    """Base of every error the farm raises on purpose."""

    status: int = 500

    def __init__(self, message: str, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        # Fields the error body carries besides the message, such as a job id.
        self.extra = extra

    def __str__(self) -> str:
        return self.message


class SettingsError(FarmError):
    """A setting is missing, unknown or malformed."""


class InvalidInput(FarmError):
    """The request is malformed or does not fit what was expected."""

    status = 400


class ModelRejected(InvalidInput):
    """An uploaded model cannot be served; the message says why."""


class Unauthorized(FarmError):
    """No valid credentials were presented."""

    status = 401


class Forbidden(FarmError):
    """The credentials do not allow this action."""

    status = 403


class NotFound(FarmError):
    """The named resource does not exist."""

    status = 404


class Conflict(FarmError):
    """The request conflicts with the current state, such as a duplicate."""

    status = 409


class PayloadTooLarge(FarmError):
    """The request body or upload is over the configured limit."""

    status = 413


class RateLimited(FarmError):
    """The caller is over its rate limit, or a queue is full; retry_after is in seconds."""

    status = 429
    retry_after = 1


class Unavailable(FarmError):
    """A dependency (database, broker, workers) cannot serve the request now."""

    status = 503
    retry_after: int | None = None


class SchemaNotReady(Unavailable):
    """The registry database has not been migrated to the current schema."""


class DeadlineExceeded(FarmError):
    """The request did not finish within its timeout."""

    status = 504


def error_for_status(status: int, message: str) -> FarmError:
    """The error of the given HTTP status, for messages that crossed a process boundary."""
    kinds = [FarmError, *FarmError.__subclasses__()]
    for kind in kinds:
        if kind.status == status and kind is not SettingsError:
            return kind(message)
    error = FarmError(message)
    error.status = status
    return error
