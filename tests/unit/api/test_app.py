"""The REST API on SQLite and a closed broker port: metadata, health, docs and error bodies."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm.exc import ObjectDeletedError, StaleDataError

from inference_farm import __version__
from inference_farm.api.auth import OPEN, scope
from inference_farm.errors import Conflict, FarmError, RateLimited

LEAK = "db password is hunter2"


def _raiser(error: Exception):
    @scope(OPEN)  # a throwaway route, open so that only its error is under test
    def view():
        raise error

    return view


def test_server_metadata(client: FlaskClient) -> None:
    response = client.get("/v2")
    assert response.status_code == 200
    body = response.get_json()
    assert body["name"] == "inference-farm"
    assert body["version"] == __version__
    assert body["extensions"] == []


def test_live(client: FlaskClient) -> None:
    response = client.get("/v2/health/live")
    assert response.status_code == 200
    assert response.get_json() == {"live": True}


def test_ready_is_503_and_says_why(client: FlaskClient) -> None:
    response = client.get("/v2/health/ready")
    assert response.status_code == 503
    body = response.get_json()
    assert body["ready"] is False
    assert isinstance(body["error"], str)
    assert body["error"]
    checks = body["checks"]
    assert "127.0.0.1:1" in checks["broker"]
    assert checks["broker"] != "ok"
    assert "not migrated" in checks["database"]
    assert "run `inference-farm db upgrade`" in checks["database"]
    assert "result_backend" not in checks
    assert "broker" in body["error"]
    assert "database" in body["error"]


def test_openapi_lists_ready(client: FlaskClient) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    paths = response.get_json()["paths"]
    assert "/v2/health/ready" in paths
    assert "/v2/health/live" in paths
    document = response.get_json()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert document["security"] == [{"bearer": []}]  # every operation, unless it says not
    assert paths["/v2/health/live"]["get"]["security"] == []
    assert "security" not in paths["/v1/models"]["get"]  # the default: a key
    # Served by the ASGI lane, not by Flask, and documented all the same.
    assert set(paths["/v2/models/{name}/versions/{version}/infer"]) == {"post", "parameters"}
    assert "text/event-stream" in paths["/v1/events"]["get"]["responses"]["200"]["content"]


def test_docs(client: FlaskClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert b"swagger" in response.data.lower()


def test_v2_not_found_is_error_only(client: FlaskClient) -> None:
    response = client.get("/v2/no/such/thing")
    assert response.status_code == 404
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]


def test_v1_not_found_has_smorest_shape(client: FlaskClient) -> None:
    response = client.get("/v1/no/such/thing")
    assert response.status_code == 404
    body = response.get_json()
    assert body["code"] == 404
    assert body["status"] == "Not Found"
    assert body["message"]
    assert body["error"] == body["message"]


def test_method_not_allowed_keeps_allow_header(client: FlaskClient) -> None:
    response = client.delete("/v2/health/live")
    assert response.status_code == 405
    assert "GET" in response.headers["Allow"]
    assert set(response.get_json()) == {"error"}
    assert response.mimetype == "application/json"


@pytest.mark.parametrize("prefix", ["/v2", "/v1"])
def test_unexpected_error_does_not_leak(app: Flask, client: FlaskClient, prefix: str) -> None:
    app.add_url_rule(f"{prefix}/boom", "boom", _raiser(RuntimeError(LEAK)))
    response = client.get(f"{prefix}/boom")
    assert response.status_code == 500
    assert response.get_json()["error"]
    assert b"hunter2" not in response.data
    assert b"RuntimeError" not in response.data


@pytest.mark.parametrize(
    ("error", "status"),
    [(Conflict("already there"), 409), (RateLimited("slow down"), 429), (FarmError("bad"), 500)],
)
def test_farm_error_maps_to_status(
    app: Flask, client: FlaskClient, error: FarmError, status: int
) -> None:
    app.add_url_rule("/v2/farm-error", "farm_error", _raiser(error))
    app.add_url_rule("/v1/farm-error", "farm_error_v1", _raiser(error))
    response = client.get("/v2/farm-error")
    assert response.status_code == status
    assert response.get_json() == {"error": error.message}
    v1 = client.get("/v1/farm-error")
    assert v1.status_code == status
    assert v1.get_json()["code"] == status
    assert v1.get_json()["error"] == error.message


@pytest.mark.parametrize(
    "error",
    [StaleDataError("UPDATE expected 1 row, 0 matched"), ObjectDeletedError(None, "gone")],
    ids=["stale", "deleted"],
)
def test_a_row_lost_to_a_concurrent_request_is_409(
    app: Flask, client: FlaskClient, error: Exception
) -> None:
    app.add_url_rule("/v1/race", "race", _raiser(error))
    response = client.get("/v1/race")
    assert response.status_code == 409, response.get_json()
    assert "retry" in response.get_json()["error"]
