"""The one reader of the environment: INFERENCE_FARM_* variables over an optional YAML file."""

from __future__ import annotations

import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inference_farm.errors import SettingsError

log = logging.getLogger(__name__)

PREFIX = "INFERENCE_FARM_"
CONFIG_VAR = PREFIX + "CONFIG"
# Variables with the prefix that belong to the client and the CLI, not to the server.
CLIENT_VARS = frozenset({"CONFIG", "URL", "API_KEY"})
BROKER_SCHEMES = ("redis", "rediss", "redis+socket")
DATABASE_DRIVERS = ("sqlite", "postgresql")


def hide_password(url: str) -> str:
    """url with the password in it, if any, masked."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


class Settings(BaseModel):
    """Every setting of the farm, with its default and meaning."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path = Field(Path(".inference-farm"), description="Local data folder.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL of the registry; default: SQLite in data_dir."
    )
    broker_url: str | None = Field(
        None, description="Redis URL of the Celery broker; unset: `up` starts its own Redis."
    )
    result_backend: str | None = Field(
        None, description="Redis URL of the result backend; default: the broker URL."
    )
    storage_url: str | None = Field(
        None, description="Artifact store URL; default: file:// folder in data_dir."
    )
    result_expires: int = Field(86400, ge=1, description="Seconds a result is kept.")
    visibility_timeout: int = Field(
        3600, ge=1, description="Seconds before an unacknowledged job is redelivered."
    )
    worker_prefetch_multiplier: int = Field(
        1, ge=1, description="Messages a worker process reserves ahead of time."
    )
    worker_concurrency: int | None = Field(
        None, ge=1, description="Worker processes; default: the number of CPUs."
    )
    worker_resync_seconds: float = Field(
        10.0, gt=0,
        description="How often an all-models worker looks for models it does not consume yet.",
    )  # fmt: skip
    api_host: str = Field(
        "127.0.0.1", description="Address the API, Flower and worker metrics bind to."
    )
    api_port: int = Field(8000, ge=1, le=65535, description="Port of the API.")
    grpc_port: int = Field(
        8001, ge=0, le=65535,
        description="Port of the gRPC Open Inference Protocol endpoint, as in Triton; 0 is off.",
    )  # fmt: skip
    api_workers: int = Field(
        1, ge=1, description="API server processes (gunicorn + uvicorn); one coalesces best."
    )
    api_threads: int = Field(
        32, ge=1, description="Threads per API process for Flask routes and blocking reads."
    )
    api_header_timeout: float = Field(
        10.0, gt=0, description="Seconds a client has to send a request's headers (408 after)."
    )
    api_body_timeout: float = Field(
        30.0, gt=0,
        description="Seconds a request body may take, plus 1 s per api_body_min_rate bytes.",
    )  # fmt: skip
    api_body_min_rate: float = Field(
        1024.0, gt=0, description="Bytes per second a slow body must keep up past its grace."
    )
    api_keepalive_timeout: float = Field(
        5.0, gt=0, description="Seconds an idle keep-alive connection stays open."
    )
    api_max_connections: int = Field(
        1000, ge=1, description="Connections per API process past which requests get 503."
    )
    task_events: bool = Field(
        False, description="Workers send task events from the start; Flower turns them on."
    )
    flower_port: int = Field(5555, ge=1, le=65535, description="Port of Flower.")
    flower_basic_auth: str | None = Field(
        None, description="user:password that Flower requires; unset: no auth."
    )
    jobs_wait_for_workers: bool = Field(
        False,
        description="POST /v1/jobs queues a job for a model no live worker serves, for a pool "
        "that scales from zero on its queue (KEDA); off: 503 at once.",
    )
    flower_url: str | None = Field(
        None, description="Flower's address as a browser reaches it; the console links to it."
    )
    events_interval: float = Field(
        2.0, ge=0.2, le=60,
        description="Seconds between the snapshots /v1/events pushes (one per API process).",
    )  # fmt: skip
    max_request_bytes: int = Field(
        64 * 2**20, ge=1, description="Largest request body the API accepts (413 above)."
    )
    max_upload_bytes: int = Field(
        2 * 2**30, ge=1, description="Largest model upload the API accepts (413 above)."
    )
    max_archive_ratio: float = Field(
        100.0, ge=1,
        description="How many times its compressed size an archive member may unpack to.",
    )  # fmt: skip
    validate_timeout: float = Field(
        120.0, gt=0, description="Seconds a worker may spend validating one upload."
    )
    worker_device: str = Field(
        "cpu", description="Device of a worker's sessions: cpu, or cuda / cuda:N for a GPU."
    )
    intra_op_threads: int = Field(
        0, ge=0, description="onnxruntime intra-op threads per session; 0 lets it decide."
    )
    cache_max_models: int = Field(8, ge=1, description="Sessions a worker keeps loaded at most.")
    cache_max_bytes: int = Field(
        4 * 2**30, ge=1, description="Memory budget of a worker's loaded sessions, in bytes."
    )
    cache_idle_seconds: float = Field(
        600.0, gt=0, description="Seconds after which an unused session is unloaded."
    )
    request_timeout: float = Field(
        30.0, gt=0, description="Seconds a synchronous infer waits before answering 504."
    )
    max_tensor_elements: int = Field(
        2**24, ge=1, description="Tensor elements one request may carry in all (400 above)."
    )
    max_queue_length: int = Field(
        1000, ge=1, description="Jobs waiting on one model's queue before new ones get 429."
    )
    max_deliveries: int = Field(
        3, ge=1, description="Times a job is delivered before a job that kills workers fails."
    )
    max_batch_size: int = Field(
        32, ge=1, le=4096,
        description="Rows a worker stacks into one run, for models without their own; 1: never.",
    )  # fmt: skip
    max_queue_delay_ms: float = Field(
        0.0, ge=0, le=1000,
        description="Milliseconds a worker waits to fill a batch; 0: runs what is waiting.",
    )  # fmt: skip
    coalesce_requests: bool = Field(
        True, description="Send concurrent sync requests for one model version as one job."
    )
    coalesce_max_inflight: int = Field(
        1, ge=1, description="Coalesced jobs an API process keeps in flight per model version."
    )
    registry_cache_seconds: float = Field(
        2.0, ge=0,
        description="Seconds a process trusts a key or version it read; the revocation delay.",
    )  # fmt: skip
    rate_per_second: float | None = Field(
        None, gt=0, description="Requests per second a key may make; unset: no limit."
    )
    rate_burst: int | None = Field(
        None, ge=1, description="Requests a key may make in any one second; default: 2 x rate."
    )
    max_queued_jobs_per_key: int | None = Field(
        None, ge=1, description="Queued or running jobs one key may have; unset: no cap."
    )
    tls_cert: Path | None = Field(None, description="PEM certificate: the API serves HTTPS.")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert.")
    health_timeout: float = Field(
        2.0, gt=0, description="Seconds the readiness check waits for each dependency."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Log level of every process."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="Log lines as text, or as one JSON object each."
    )
    metrics_scope: Literal["open", "metrics", "admin"] = Field(
        "metrics", description="Who may scrape the API's /metrics: anyone, or keys with the scope."
    )
    worker_metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of a worker's Prometheus metrics; 0: none."
    )

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", "metrics_scope", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("broker_url", "result_backend")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in BROKER_SCHEMES:
            shown = hide_password(value)
            raise ValueError(
                f"expected a redis://, rediss:// or redis+socket:// URL, got {shown!r}"
            )
        return value

    @field_validator("worker_device")
    @classmethod
    def _device(cls, value: str) -> str:
        kind, _, index = value.lower().partition(":")
        if (
            kind not in ("cpu", "cuda")
            or (index and not index.isdigit())
            or (kind == "cpu" and index)
        ):
            raise ValueError(f"expected cpu, cuda or cuda:N, got {value!r}")
        return value.lower()

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("expected an SQLAlchemy URL such as postgresql+psycopg://…") from None
        if url.get_backend_name() not in DATABASE_DRIVERS:
            raise ValueError(f"expected a sqlite:// or postgresql:// URL, got {url.drivername}://")
        return value

    @field_validator("flower_basic_auth")
    @classmethod
    def _basic_auth(cls, value: str | None) -> str | None:
        if value is not None:
            user, _, password = value.partition(":")
            if not user or not password:
                raise ValueError("expected user:password, both non-empty")
        return value

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        return self

    @property
    def effective_database_url(self) -> str:
        """The registry URL, with the embedded SQLite default filled in."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'registry.db').resolve()}"

    @property
    def effective_result_backend(self) -> str | None:
        """The result backend URL, defaulting to the broker."""
        return self.result_backend or self.broker_url

    @property
    def effective_storage_url(self) -> str:
        """The artifact store URL, with the local default filled in."""
        return self.storage_url or (self.data_dir / "artifacts").resolve().as_uri()


def _read_yaml(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except OSError as exc:
        raise SettingsError(f"cannot read {CONFIG_VAR}={path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        reason = " ".join(str(exc).split())
        raise SettingsError(f"{CONFIG_VAR}={path} is not valid YAML: {reason}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"{CONFIG_VAR}={path} must be a mapping of setting: value")
    return {str(key): value for key, value in data.items()}


def _from_env(env: dict[str, str]) -> dict[str, str]:
    values = {}
    for name, value in env.items():
        if not name.startswith(PREFIX):
            continue
        key = name[len(PREFIX) :]
        if key in CLIENT_VARS:
            continue
        if key.lower() not in Settings.model_fields:
            log.warning("ignoring unknown setting %s", name)
            continue
        if value == "":
            continue  # an empty variable means unset: the file or the default applies
        values[key.lower()] = value
    return values


def _describe(key: str, sources: dict[str, str]) -> str:
    origin = sources.get(key, "default")
    return f"{PREFIX}{key.upper()}" if origin == "env" else f"{key} (in {origin})"


def load_settings(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    """Read settings from env (default os.environ) over the YAML file; raise SettingsError."""
    env = dict(os.environ if env is None else env)
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    if env.get(CONFIG_VAR):
        for key, value in _read_yaml(env[CONFIG_VAR]).items():
            values[key], sources[key] = value, env[CONFIG_VAR]
    for key, value in _from_env(env).items():
        values[key], sources[key] = value, "env"
    values.update(overrides)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        error = exc.errors()[0]
        message = error["msg"].removeprefix("Value error, ")
        if not error["loc"]:
            raise SettingsError(f"invalid settings: {message}") from None
        key = str(error["loc"][0])
        if error["type"] == "extra_forbidden":
            raise SettingsError(f"unknown setting {_describe(key, sources)}") from None
        raise SettingsError(f"invalid setting {_describe(key, sources)}: {message}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
