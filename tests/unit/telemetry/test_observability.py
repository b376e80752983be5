"""Request ids, log formats and a worker's job metrics, without any service."""

from __future__ import annotations

import json
import logging

import pytest
from prometheus_client import REGISTRY

from inference_farm.errors import SettingsError
from inference_farm.protocol.messages import Reply, RequestMeta
from inference_farm.settings import load_settings
from inference_farm.telemetry import request_ids
from inference_farm.telemetry.logs import FIELDS, JsonFormatter, TextFormatter
from inference_farm.worker import metrics as worker_metrics


@pytest.mark.parametrize("incoming", ["req-1", "a.b:c_d", "x" * 64])
def test_a_safe_request_id_is_kept(incoming: str) -> None:
    assert request_ids.accept(incoming) == incoming


@pytest.mark.parametrize("incoming", [None, "", "x" * 65, "a b", "id\nforged", "é"])
def test_an_unsafe_request_id_is_replaced(incoming: str | None) -> None:
    made = request_ids.accept(incoming)
    assert made != incoming and len(made) == 32 and made.isalnum()


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("farm.test", logging.INFO, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return record


def test_json_lines_carry_the_request_id_and_fields() -> None:
    line = JsonFormatter().format(
        _record("job done", request_id="req-9", **{FIELDS: {"job_id": "j1", "batch_size": 2}})
    )
    document = json.loads(line)
    assert document["message"] == "job done"
    assert (document["request_id"], document["job_id"], document["batch_size"]) == (
        "req-9",
        "j1",
        2,
    )
    assert document["level"] == "INFO" and document["logger"] == "farm.test"


def test_text_lines_append_the_request_id_once() -> None:
    assert TextFormatter().format(_record("hello", request_id="r1")).endswith("hello request_id=r1")
    assert TextFormatter().format(_record("x request_id=r1", request_id="r1")).count("r1") == 1
    assert "request_id" not in TextFormatter().format(_record("hello", request_id=None))


def test_log_format_and_metrics_scope_are_checked() -> None:
    settings = load_settings(env={"INFERENCE_FARM_LOG_FORMAT": "JSON"})
    assert settings.log_format == "json" and settings.metrics_scope == "metrics"
    with pytest.raises(SettingsError, match="INFERENCE_FARM_METRICS_SCOPE"):
        load_settings(env={"INFERENCE_FARM_METRICS_SCOPE": "everyone"})
    with pytest.raises(SettingsError, match="INFERENCE_FARM_WORKER_METRICS_PORT"):
        load_settings(env={"INFERENCE_FARM_WORKER_METRICS_PORT": "70000"})


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_report_job_counts_and_logs_one_line(caplog: pytest.LogCaptureFixture) -> None:
    labels = {"model": "unit-m", "version": "2.0.0", "device": "cpu"}
    meta = RequestMeta(enqueued_at=100.0, request_id="r-7")
    ok = Reply(ok=True, model_version="2.0.0", compute_ms=4.0, decode_ms=1.0, encode_ms=1.0,
               batch_size=3)  # fmt: skip
    late = Reply(ok=False, expired=True, error="late")
    with caplog.at_level(logging.INFO, logger="inference_farm.worker.metrics"):
        worker_metrics.report_job("cpu", "unit-m", "2.0.0", meta, "t-1", ok, 100.25)
        worker_metrics.report_job("cpu", "unit-m", "2.0.0", meta, "t-2", late, 101.0)
    assert _sample("inference_farm_inference_request_success_total", **labels) == 1
    assert _sample("inference_farm_inference_request_failure_total", **labels,
                   outcome="expired") == 1  # fmt: skip
    assert _sample("inference_farm_inference_queue_duration_seconds_sum", **labels) == 1.25
    assert _sample("inference_farm_inference_compute_infer_duration_seconds_sum", **labels) == 0.004
    assert _sample("inference_farm_inference_batch_size_sum", **labels) == 3
    first, second = (record.__dict__[FIELDS] for record in caplog.records)
    assert first == {
        "job_id": "t-1", "model": "unit-m", "version": "2.0.0", "outcome": "succeeded",
        "queue_wait_ms": 250.0, "compute_ms": 4.0, "batch_size": 3, "request_id": "r-7",
        "error": None,
    }  # fmt: skip
    assert (second["outcome"], second["error"], second["batch_size"]) == ("expired", "late", None)


def test_the_grafana_dashboard_uses_only_metrics_the_farm_exports() -> None:
    import re
    from pathlib import Path

    from inference_farm.telemetry import metrics  # noqa: F401  (defines the API's metrics)

    dashboard = Path(__file__).parents[3] / "configs" / "grafana-dashboard.json"
    used = set(re.findall(r"inference_farm_[a-z_]+", dashboard.read_text(encoding="utf-8")))
    # Read at scrape time by collectors, so not in the registry here.
    exported = {"inference_farm_queue_depth", "inference_farm_jobs"}
    exported |= {f"inference_farm_gpu_memory_{kind}_bytes" for kind in ("used", "total")}
    for family in REGISTRY.collect():
        exported |= {sample.name for sample in family.samples} | {family.name}
    for name in list(exported):
        for suffix in ("_bucket", "_sum", "_count", "_total"):
            exported.add(name + suffix)
    assert used and used <= exported, sorted(used - exported)
