"""load_settings: defaults, sources, and one clear line for every bad value."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from inference_farm.errors import SettingsError
from inference_farm.settings import load_settings


def _error(env: dict[str, str], **overrides: object) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(env=env, **overrides)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def _yaml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "farm.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_defaults() -> None:
    settings = load_settings(env={})
    data_dir = Path(".inference-farm")
    assert settings.data_dir == data_dir
    assert settings.broker_url is None
    assert settings.effective_result_backend is None
    assert settings.effective_database_url == f"sqlite:///{(data_dir / 'registry.db').resolve()}"
    assert settings.effective_storage_url == (data_dir / "artifacts").resolve().as_uri()
    assert settings.effective_storage_url.startswith("file://")
    assert settings.api_port == 8000
    assert settings.log_level == "INFO"


def test_result_backend_defaults_to_broker() -> None:
    settings = load_settings(env={"INFERENCE_FARM_BROKER_URL": "redis://h:6379/0"})
    assert settings.effective_result_backend == "redis://h:6379/0"
    other = load_settings(
        env={
            "INFERENCE_FARM_BROKER_URL": "redis://h:6379/0",
            "INFERENCE_FARM_RESULT_BACKEND": "redis://h:6379/1",
        }
    )
    assert other.effective_result_backend == "redis://h:6379/1"


def test_env_wins_over_yaml_file(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "api_port: 9000\nflower_port: 6000\n")
    settings = load_settings(env={"INFERENCE_FARM_CONFIG": path, "INFERENCE_FARM_API_PORT": "9100"})
    assert settings.api_port == 9100
    assert settings.flower_port == 6000


def test_yaml_lower_case_keys(tmp_path: Path) -> None:
    path = _yaml(
        tmp_path,
        "broker_url: redis://127.0.0.1:6379/0\nresult_expires: 60\nlog_level: debug\n",
    )
    settings = load_settings(env={"INFERENCE_FARM_CONFIG": path})
    assert settings.broker_url == "redis://127.0.0.1:6379/0"
    assert settings.result_expires == 60
    assert settings.log_level == "DEBUG"


def test_unknown_yaml_key_names_key_and_file(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "api_port: 9000\nbrokr_url: redis://x\n")
    message = _error({"INFERENCE_FARM_CONFIG": path})
    assert "brokr_url" in message
    assert path in message


def test_invalid_yaml_value_names_key_and_file(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "api_port: -5\n")
    message = _error({"INFERENCE_FARM_CONFIG": path})
    assert "api_port" in message
    assert path in message


@pytest.mark.parametrize("url", ["http://x", "localhost:6379", "amqp://guest@h//"])
def test_bad_broker_url_names_variable(url: str) -> None:
    message = _error({"INFERENCE_FARM_BROKER_URL": url})
    assert "INFERENCE_FARM_BROKER_URL" in message
    assert "redis://" in message


def test_bad_result_backend_names_variable() -> None:
    message = _error({"INFERENCE_FARM_RESULT_BACKEND": "http://x"})
    assert "INFERENCE_FARM_RESULT_BACKEND" in message


@pytest.mark.parametrize("url", ["redis://h:6379/0", "rediss://h:6380/0", "redis+socket:///tmp/r"])
def test_good_broker_urls(url: str) -> None:
    assert load_settings(env={"INFERENCE_FARM_BROKER_URL": url}).broker_url == url


@pytest.mark.parametrize("url", ["mysql://u@h/db", "garbage", "not a url at all"])
def test_bad_database_url(url: str) -> None:
    message = _error({"INFERENCE_FARM_DATABASE_URL": url})
    assert message.startswith("invalid setting INFERENCE_FARM_DATABASE_URL:")


@pytest.mark.parametrize(
    "url", ["sqlite:////tmp/r.db", "postgresql+psycopg://u:p@h/db", "postgresql://h/db"]
)
def test_good_database_urls(url: str) -> None:
    settings = load_settings(env={"INFERENCE_FARM_DATABASE_URL": url})
    assert settings.effective_database_url == url


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("INFERENCE_FARM_RESULT_EXPIRES", "-1"),
        ("INFERENCE_FARM_RESULT_EXPIRES", "0"),
        ("INFERENCE_FARM_VISIBILITY_TIMEOUT", "-10"),
        ("INFERENCE_FARM_API_PORT", "0"),
        ("INFERENCE_FARM_API_PORT", "65536"),
        ("INFERENCE_FARM_FLOWER_PORT", "-1"),
        ("INFERENCE_FARM_WORKER_CONCURRENCY", "0"),
        ("INFERENCE_FARM_API_WORKERS", "0"),
        ("INFERENCE_FARM_HEALTH_TIMEOUT", "0"),
    ],
)
def test_out_of_range_names_variable(name: str, value: str) -> None:
    message = _error({name: value})
    assert message.startswith(f"invalid setting {name}:")
    assert message.count(name) == 1


@pytest.mark.parametrize("value", ["abc", "1.5", "8000x"])
def test_non_integer_names_variable(value: str) -> None:
    message = _error({"INFERENCE_FARM_API_PORT": value})
    assert message.startswith("invalid setting INFERENCE_FARM_API_PORT:")
    assert "integer" in message


def test_missing_config_file(tmp_path: Path) -> None:
    path = str(tmp_path / "nope.yaml")
    message = _error({"INFERENCE_FARM_CONFIG": path})
    assert "INFERENCE_FARM_CONFIG" in message
    assert path in message


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_yaml_not_a_mapping(tmp_path: Path, text: str) -> None:
    path = _yaml(tmp_path, text)
    message = _error({"INFERENCE_FARM_CONFIG": path})
    assert "mapping" in message
    assert path in message


def test_empty_yaml_file_means_defaults(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "# nothing set\n")
    assert load_settings(env={"INFERENCE_FARM_CONFIG": path}).api_port == 8000


def test_invalid_yaml_is_one_line(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "a: [1,\nb: 2\n")
    message = _error({"INFERENCE_FARM_CONFIG": path})
    assert "not valid YAML" in message


def test_invalid_yaml_names_file(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "a: [1,\nb: 2\n")
    with pytest.raises(SettingsError) as info:
        load_settings(env={"INFERENCE_FARM_CONFIG": path})
    assert str(info.value).startswith(f"INFERENCE_FARM_CONFIG={path} is not valid YAML")


def test_empty_env_value_of_optional_setting_is_unset() -> None:
    settings = load_settings(
        env={"INFERENCE_FARM_BROKER_URL": "", "INFERENCE_FARM_WORKER_CONCURRENCY": ""}
    )
    assert settings.broker_url is None
    assert settings.worker_concurrency is None


def test_empty_config_variable_is_unset() -> None:
    assert load_settings(env={"INFERENCE_FARM_CONFIG": ""}).api_port == 8000


@pytest.mark.parametrize(
    "name", ["INFERENCE_FARM_API_PORT", "INFERENCE_FARM_DATA_DIR", "INFERENCE_FARM_LOG_LEVEL"]
)
def test_empty_env_value_means_default(name: str) -> None:
    fresh = load_settings(env={})
    settings = load_settings(env={name: ""})
    assert settings == fresh


def test_empty_env_value_leaves_yaml_value(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "broker_url: redis://127.0.0.1:6379/0\n")
    settings = load_settings(env={"INFERENCE_FARM_CONFIG": path, "INFERENCE_FARM_BROKER_URL": ""})
    assert settings.broker_url == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize("value", ["debug", "Warning", "ERROR"])
def test_log_level_any_case(value: str) -> None:
    assert load_settings(env={"INFERENCE_FARM_LOG_LEVEL": value}).log_level == value.upper()


def test_bad_log_level_names_variable() -> None:
    assert "INFERENCE_FARM_LOG_LEVEL" in _error({"INFERENCE_FARM_LOG_LEVEL": "loud"})


def test_client_variables_are_not_settings(caplog: pytest.LogCaptureFixture) -> None:
    env = {"INFERENCE_FARM_URL": "http://farm:8000", "INFERENCE_FARM_API_KEY": "ifk_x_y"}
    with caplog.at_level(logging.WARNING, logger="inference_farm.settings"):
        settings = load_settings(env=env)
    assert settings == load_settings(env={})
    assert not caplog.records


def test_unknown_variable_warns_but_loads(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="inference_farm.settings"):
        settings = load_settings(env={"INFERENCE_FARM_FOO": "1", "OTHER_FOO": "2"})
    assert settings.api_port == 8000
    messages = [record.getMessage() for record in caplog.records]
    assert any("INFERENCE_FARM_FOO" in message for message in messages), messages
    assert not any("OTHER_FOO" in message for message in messages)


def test_overrides_win_over_env() -> None:
    settings = load_settings(env={"INFERENCE_FARM_API_PORT": "9000"}, api_port=9001)
    assert settings.api_port == 9001


@pytest.mark.parametrize("value", ["admin:secret", "a:b:c"])
def test_flower_basic_auth_accepted(value: str) -> None:
    env = {"INFERENCE_FARM_FLOWER_BASIC_AUTH": value}
    assert load_settings(env=env).flower_basic_auth == value


@pytest.mark.parametrize("value", ["admin", ":secret"])
def test_flower_basic_auth_must_be_user_colon_password(value: str) -> None:
    message = _error({"INFERENCE_FARM_FLOWER_BASIC_AUTH": value})
    assert "INFERENCE_FARM_FLOWER_BASIC_AUTH" in message
    assert "user:password" in message


def test_flower_basic_auth_rejects_empty_password() -> None:
    _error({"INFERENCE_FARM_FLOWER_BASIC_AUTH": "admin:"})


def test_settings_are_frozen() -> None:
    settings = load_settings(env={})
    with pytest.raises(ValueError, match="frozen"):
        settings.api_port = 1  # type: ignore[misc]


def test_bad_broker_url_message_hides_its_password() -> None:
    message = _error({"INFERENCE_FARM_BROKER_URL": "http://farm:hunter2@redis:6379/0"})
    assert "hunter2" not in message
    assert "http://farm:***@redis:6379/0" in message
