"""celeryconfig.build and create_celery: JSON only, late acks, settings carried through."""

from __future__ import annotations

from typing import Any

import pytest

import celeryconfig
from inference_farm.broker.app import create_celery
from inference_farm.broker.names import CONTROL_QUEUE, model_queue
from inference_farm.errors import SettingsError
from inference_farm.settings import Settings, load_settings
from tests.conftest import CLOSED_REDIS


@pytest.fixture
def settings() -> Settings:
    return load_settings(
        env={},
        broker_url=CLOSED_REDIS,
        result_expires=123,
        visibility_timeout=4567,
        worker_prefetch_multiplier=3,
    )


@pytest.fixture
def config(settings: Settings) -> dict[str, Any]:
    return celeryconfig.build(settings)


def test_json_and_msgpack_only(config: dict[str, Any]) -> None:
    assert config["accept_content"] == ["json", "msgpack"]  # msgpack: coalesced jobs
    assert config["result_accept_content"] == ["json"]
    assert config["task_serializer"] == "json"
    assert config["result_serializer"] == "json"
    assert config["event_serializer"] == "json"


def test_no_pickle_in_built_config(config: dict[str, Any]) -> None:
    assert "pickle" not in repr(config).lower()


def test_no_pickle_anywhere_in_app_conf(settings: Settings) -> None:
    conf = create_celery(settings).conf
    offending = {key: value for key, value in conf.items() if "pickle" in repr(value).lower()}
    assert not offending
    assert conf.accept_content == ["json", "msgpack"]
    assert conf.result_accept_content == ["json"]


def test_late_acks_and_requeue_on_worker_loss(config: dict[str, Any]) -> None:
    assert config["task_acks_late"] is True
    assert config["task_reject_on_worker_lost"] is True


def test_values_from_settings(config: dict[str, Any]) -> None:
    assert config["worker_prefetch_multiplier"] == 3
    assert config["result_expires"] == 123
    assert config["broker_url"] == CLOSED_REDIS
    assert config["result_backend"] == CLOSED_REDIS


def test_separate_result_backend() -> None:
    settings = load_settings(env={}, broker_url=CLOSED_REDIS, result_backend="redis://h:1/2")
    assert celeryconfig.build(settings)["result_backend"] == "redis://h:1/2"


def test_events_off_until_asked_for(config: dict[str, Any]) -> None:
    # Flower turns the workers' task events on while it runs; a setting turns them on always.
    assert config["worker_send_task_events"] is False
    assert config["task_send_sent_event"] is False
    settings = load_settings(env={}, broker_url=CLOSED_REDIS, task_events=True)
    assert celeryconfig.build(settings)["worker_send_task_events"] is True


def test_one_visibility_timeout(config: dict[str, Any]) -> None:
    assert config["broker_transport_options"]["visibility_timeout"] == 4567
    assert config["result_backend_transport_options"]["visibility_timeout"] == 4567


def test_retry_on_startup(config: dict[str, Any]) -> None:
    assert config["broker_connection_retry_on_startup"] is True


def test_queues() -> None:
    assert CONTROL_QUEUE == "farm.control"
    assert model_queue("x") == "farm.model.x"
    assert model_queue("resnet-50") == "farm.model.resnet-50"


def test_app_conf_carries_config(settings: Settings) -> None:
    app = create_celery(settings)
    assert app.conf.task_default_queue == "farm.control"
    assert app.conf.task_acks_late is True
    assert app.conf.worker_prefetch_multiplier == 3
    assert app.conf.result_expires == 123
    assert app.conf.broker_transport_options["visibility_timeout"] == 4567
    assert app.conf.broker_transport_options["priority_steps"] == list(range(10))
    # Every sweep for a dead worker's jobs scans Redis; kombu's default scans one in ten.
    assert app.conf.broker_transport_options["unacked_restore_throttle"] == 1
    assert app.conf.result_backend_transport_options == {"visibility_timeout": 4567}
    assert app.conf.farm_settings is settings


def test_no_broker_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="INFERENCE_FARM_BROKER_URL"):
        create_celery(load_settings(env={}))


def test_ping_task_registered(settings: Settings) -> None:
    app = create_celery(settings)
    app.loader.import_default_modules()
    app.finalize()
    assert "farm.ping" in app.tasks
