"""One exception tree for the farm; every error knows its HTTP and gRPC status."""

from __future__ import annotations


class FarmError(Exception):
    """Base of every error the farm raises on purpose."""

    status: int = 500
    grpc_code: str = "INTERNAL"  # a grpc.StatusCode name, so this module needs no grpc

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
    grpc_code = "INVALID_ARGUMENT"


class ModelRejected(InvalidInput):
    """An uploaded model cannot be served; the message says why."""


class Unauthorized(FarmError):
    """No valid credentials were presented."""

    status = 401
    grpc_code = "UNAUTHENTICATED"


class Forbidden(FarmError):
    """The credentials do not allow this action."""

    status = 403
    grpc_code = "PERMISSION_DENIED"


class NotFound(FarmError):
    """The named resource does not exist."""

    status = 404
    grpc_code = "NOT_FOUND"


class Conflict(FarmError):
    """The request conflicts with the current state, such as a duplicate."""

    status = 409
    grpc_code = "FAILED_PRECONDITION"


class PayloadTooLarge(FarmError):
    """The request body or upload is over the configured limit."""

    status = 413
    grpc_code = "RESOURCE_EXHAUSTED"


class RateLimited(FarmError):
    """The caller is over its rate limit, or a queue is full; retry_after is in seconds."""

    status = 429
    grpc_code = "RESOURCE_EXHAUSTED"
    retry_after = 1


class Unavailable(FarmError):
    """A dependency (database, broker, workers) cannot serve the request now."""

    status = 503
    grpc_code = "UNAVAILABLE"
    retry_after: int | None = None


class SchemaNotReady(Unavailable):
    """The registry database has not been migrated to the current schema."""


class DeadlineExceeded(FarmError):
    """The request did not finish within its timeout."""

    status = 504
    grpc_code = "DEADLINE_EXCEEDED"


def error_for_status(status: int, message: str) -> FarmError:
    """The error of the given HTTP status, for messages that crossed a process boundary."""
    kinds = [FarmError, *FarmError.__subclasses__()]
    for kind in kinds:
        if kind.status == status and kind is not SettingsError:
            return kind(message)
    error = FarmError(message)
    error.status = status
    return error
