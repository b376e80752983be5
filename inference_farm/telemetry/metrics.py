"""Prometheus metrics of the API, and the exposition the API and the workers share."""

from __future__ import annotations

import functools
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from inference_farm.telemetry import multiproc

PREFIX = "inference_farm_"
# Seconds, from half a millisecond (a tiny model on CPU) to a minute (a slow job).
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
)  # fmt: skip

HTTP_REQUESTS = Counter(
    PREFIX + "http_requests",
    "HTTP requests answered, by method, route, model and status code",
    ["method", "route", "model", "status"],
)
HTTP_LATENCY = Histogram(
    PREFIX + "http_request_duration_seconds",
    "Time from receiving an HTTP request to having its response, by method, route and model",
    ["method", "route", "model"],
    buckets=LATENCY_BUCKETS,
)
GRPC_REQUESTS = Counter(
    PREFIX + "grpc_requests",
    "gRPC calls answered, by RPC, model and status code (OK, NOT_FOUND …)",
    ["rpc", "model", "code"],
)
GRPC_LATENCY = Histogram(
    PREFIX + "grpc_request_duration_seconds",
    "Time from receiving a gRPC call to having its answer, by RPC and model",
    ["rpc", "model"],
    buckets=LATENCY_BUCKETS,
)
RATE_LIMITED = Counter(
    PREFIX + "rate_limit_rejections",
    "Requests refused with 429, by the limit they hit: key_rate, jobs_per_key or queue_full",
    ["limit"],
)


def observe_request(method: str, route: str, model: str, status: int | str, seconds: float) -> None:
    """Count one answered HTTP request and its latency."""
    count, latency = _request_children(method, route, model, status)
    count.inc()
    latency.observe(seconds)


def observe_rpc(rpc: str, model: str, code: str, seconds: float) -> None:
    """Count one answered gRPC call and its latency; model is "" unless it answered OK."""
    model = model if code == "OK" else ""  # names from refused calls are unbounded
    GRPC_REQUESTS.labels(rpc, model, code).inc()
    GRPC_LATENCY.labels(rpc, model).observe(seconds)


@functools.lru_cache(maxsize=4096)
def _request_children(method: str, route: str, model: str, status: int) -> tuple[Any, Any]:
    # labels() costs more than the observation itself; model names are bounded by the caller.
    return HTTP_REQUESTS.labels(method, route, model, str(status)), HTTP_LATENCY.labels(
        method, route, model
    )


def rate_limited(limit: str) -> None:
    """Count one request refused by limit (key_rate, jobs_per_key or queue_full)."""
    RATE_LIMITED.labels(limit).inc()


def serving_registry(*collectors: Any) -> CollectorRegistry:
    """The registry to serve for this process tree, with collectors added (call once)."""
    if not multiproc.enabled():
        for collector in collectors:
            REGISTRY.register(collector)
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    for collector in collectors:
        registry.register(collector)
    return registry


def render(*collectors: Any) -> bytes:
    """The text exposition of this process tree's metrics plus collectors, read now."""
    if multiproc.enabled():
        base = CollectorRegistry()
        MultiProcessCollector(base)
    else:
        base = REGISTRY
    extra = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        extra.register(collector)
    return generate_latest(base) + generate_latest(extra)


def _families() -> Any:
    if not multiproc.enabled():
        return REGISTRY.collect()
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry.collect()


def _is_infer(labels: dict[str, str]) -> bool:
    return labels.get("route", "").endswith("/infer") or labels.get("rpc") == "ModelInfer"


def _is_error(labels: dict[str, str]) -> tuple[bool, bool]:
    """(client error, server error) of a sample's status or gRPC code."""
    status, code = labels.get("status", ""), labels.get("code", "OK")
    if status:
        return status.startswith("4"), status.startswith("5")
    server = code in ("INTERNAL", "UNAVAILABLE", "UNKNOWN", "DEADLINE_EXCEEDED", "DATA_LOSS")
    return code != "OK" and not server, server


def infer_totals() -> dict[str, Any]:
    """This process tree's inference counters so far, over REST and gRPC: requests, client
    and server errors, and the latency histogram's cumulative buckets (le in seconds)."""
    totals = {"requests": 0.0, "client_errors": 0.0, "server_errors": 0.0}
    buckets = dict.fromkeys((*LATENCY_BUCKETS, float("inf")), 0.0)
    for family in _families():
        for sample in family.samples:
            if not _is_infer(sample.labels):
                continue
            if sample.name in (f"{PREFIX}http_requests_total", f"{PREFIX}grpc_requests_total"):
                client, server = _is_error(sample.labels)
                totals["requests"] += sample.value
                totals["client_errors"] += sample.value if client else 0.0
                totals["server_errors"] += sample.value if server else 0.0
            elif sample.name.endswith("_duration_seconds_bucket"):
                buckets[float(sample.labels["le"])] += sample.value
    le = [bound for bound in buckets if bound != float("inf")]
    return {**totals, "latency_le": le, "latency_counts": [buckets[b] for b in buckets]}
