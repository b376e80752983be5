"""Readiness against real services: true only when the registry and Redis both answer."""

from __future__ import annotations

import pytest

from inference_farm.api import create_app
from inference_farm.settings import Settings, load_settings
from tests.conftest import CLOSED_REDIS


def _ready(settings: Settings) -> tuple[int, dict]:
    response = create_app(settings).test_client().get("/v2/health/ready")
    return response.status_code, response.get_json()


def test_ready_when_database_and_broker_answer(farm_settings: Settings) -> None:
    status, body = _ready(farm_settings)
    assert (status, body) == (200, {"ready": True, "checks": {"database": "ok", "broker": "ok"}})


def test_not_ready_while_the_broker_is_down(farm_env: dict[str, str]) -> None:
    settings = load_settings(env={**farm_env, "INFERENCE_FARM_BROKER_URL": CLOSED_REDIS})
    status, body = _ready(settings)
    assert status == 503
    assert body["ready"] is False
    assert body["checks"]["database"] == "ok"
    assert body["checks"]["broker"].startswith("cannot reach redis://127.0.0.1:1/0")
    assert body["error"].startswith("broker: cannot reach")


def test_separate_result_backend_is_checked_too(farm_env: dict[str, str]) -> None:
    env = {**farm_env, "INFERENCE_FARM_RESULT_BACKEND": CLOSED_REDIS}
    status, body = _ready(load_settings(env=env))
    assert status == 503
    assert body["checks"]["broker"] == "ok"
    assert "cannot reach" in body["checks"]["result_backend"]


def test_not_ready_on_unmigrated_postgres_says_what_to_run(
    farm_env: dict[str, str], fresh_postgres: str
) -> None:
    env = {**farm_env, "INFERENCE_FARM_DATABASE_URL": fresh_postgres}
    status, body = _ready(load_settings(env=env))
    assert status == 503
    assert "run `inference-farm db upgrade`" in body["checks"]["database"]


@pytest.mark.parametrize("password", ["s3cret-pw"])
def test_unreachable_database_message_hides_the_password(
    farm_env: dict[str, str], password: str
) -> None:
    url = f"postgresql+psycopg://farm:{password}@127.0.0.1:1/farm"
    status, body = _ready(load_settings(env={**farm_env, "INFERENCE_FARM_DATABASE_URL": url}))
    assert status == 503
    assert "cannot reach the database" in body["checks"]["database"]
    assert password not in str(body)
