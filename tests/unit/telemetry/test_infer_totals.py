"""The API's inference counters that the event stream sends: requests, errors, latency."""

from __future__ import annotations

from inference_farm.telemetry import metrics


def test_infer_totals_count_rest_and_grpc_infers_only() -> None:
    before = metrics.infer_totals()
    metrics.observe_request("POST", "/v2/models/<name>/infer", "m", 200, 0.003)
    metrics.observe_request("POST", "/v2/models/<name>/infer", "", 400, 0.0002)
    metrics.observe_request("GET", "/v1/models", "", 500, 0.1)  # not an infer
    metrics.observe_rpc("ModelInfer", "m", "UNAVAILABLE", 0.02)
    metrics.observe_rpc("ModelMetadata", "m", "OK", 0.001)  # not an infer
    after = metrics.infer_totals()
    delta = {k: after[k] - before[k] for k in ("requests", "client_errors", "server_errors")}
    assert delta == {"requests": 3, "client_errors": 1, "server_errors": 1}
    counts = [a - b for a, b in zip(after["latency_counts"], before["latency_counts"], strict=True)]
    assert counts[-1] == 3  # +Inf holds every observation
    assert counts[after["latency_le"].index(0.0005)] == 1  # the 0.2 ms one
    assert counts[after["latency_le"].index(0.005)] == 2
    assert len(after["latency_counts"]) == len(after["latency_le"]) + 1
