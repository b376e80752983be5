"""The error tree: every class knows its HTTP status and prints its message."""

from __future__ import annotations

import pytest

from inference_farm import errors

STATUSES = [
    (errors.FarmError, 500),
    (errors.SettingsError, 500),
    (errors.InvalidInput, 400),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.PayloadTooLarge, 413),
    (errors.RateLimited, 429),
    (errors.Unavailable, 503),
    (errors.SchemaNotReady, 503),
    (errors.ModelRejected, 400),
    (errors.DeadlineExceeded, 504),
]


@pytest.mark.parametrize(("kind", "status"), STATUSES)
def test_status(kind: type[errors.FarmError], status: int) -> None:
    assert kind.status == status
    assert kind("x").status == status


@pytest.mark.parametrize("kind", [kind for kind, _ in STATUSES])
def test_subclass_of_farm_error(kind: type[errors.FarmError]) -> None:
    assert issubclass(kind, errors.FarmError)
    assert issubclass(kind, Exception)


@pytest.mark.parametrize("kind", [kind for kind, _ in STATUSES])
def test_str_is_message(kind: type[errors.FarmError]) -> None:
    error = kind("model 'resnet' not found")
    assert str(error) == "model 'resnet' not found"
    assert error.message == "model 'resnet' not found"
    assert error.args == ("model 'resnet' not found",)


def test_schema_not_ready_is_unavailable() -> None:
    assert issubclass(errors.SchemaNotReady, errors.Unavailable)


def test_every_public_error_is_covered() -> None:
    public = {
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.FarmError)
    }
    assert public == {kind for kind, _ in STATUSES}


GRPC_CODES = {
    errors.InvalidInput: "INVALID_ARGUMENT", errors.ModelRejected: "INVALID_ARGUMENT",
    errors.Unauthorized: "UNAUTHENTICATED", errors.Forbidden: "PERMISSION_DENIED",
    errors.NotFound: "NOT_FOUND", errors.Conflict: "FAILED_PRECONDITION",
    errors.PayloadTooLarge: "RESOURCE_EXHAUSTED", errors.RateLimited: "RESOURCE_EXHAUSTED",
    errors.Unavailable: "UNAVAILABLE", errors.SchemaNotReady: "UNAVAILABLE",
    errors.DeadlineExceeded: "DEADLINE_EXCEEDED", errors.FarmError: "INTERNAL",
}  # fmt: skip


@pytest.mark.parametrize(("kind", "code"), GRPC_CODES.items())
def test_every_error_knows_its_grpc_status(kind: type[errors.FarmError], code: str) -> None:
    grpc = pytest.importorskip("grpc")
    assert kind("x").grpc_code == code
    assert grpc.StatusCode[code]  # a real status code's name
