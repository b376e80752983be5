"""A worker's Prometheus metrics, its metrics HTTP port, and the one log line per job."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

from inference_farm.protocol.messages import Reply, RequestMeta
from inference_farm.telemetry.logs import FIELDS
from inference_farm.telemetry.metrics import LATENCY_BUCKETS, PREFIX, serving_registry

log = logging.getLogger(__name__)
LABELS = ["model", "version", "device"]
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LOAD_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
_device = "cpu"  # of this worker's sessions; set once at start-up by configure()

SUCCESS = Counter(PREFIX + "inference_request_success", "Requests that ran and answered", LABELS)
FAILURE = Counter(
    PREFIX + "inference_request_failure",
    "Requests that ended without outputs, by outcome: failed, expired or cancelled",
    [*LABELS, "outcome"],
)
QUEUE = Histogram(
    PREFIX + "inference_queue_duration_seconds",
    "Time from the API queueing a request to a worker taking it",
    LABELS,
    buckets=LATENCY_BUCKETS,
)
DECODE = Histogram(
    PREFIX + "inference_compute_input_duration_seconds",
    "Time decoding a request's input tensors",
    LABELS,
    buckets=LATENCY_BUCKETS,
)
COMPUTE = Histogram(
    PREFIX + "inference_compute_infer_duration_seconds",
    "Time in onnxruntime running the model",
    LABELS,
    buckets=LATENCY_BUCKETS,
)
ENCODE = Histogram(
    PREFIX + "inference_compute_output_duration_seconds",
    "Time encoding a request's output tensors",
    LABELS,
    buckets=LATENCY_BUCKETS,
)
BATCH = Histogram(
    PREFIX + "inference_batch_size",
    "Requests in the onnxruntime run that served a request",
    LABELS,
    buckets=BATCH_BUCKETS,
)
LOAD = Histogram(
    PREFIX + "model_load_duration_seconds",
    "Time loading a model version into a session",
    LABELS,
    buckets=LOAD_BUCKETS,
)
CACHE = {
    kind: Counter(PREFIX + f"cache_{kind}", f"Session cache {kind}", LABELS)
    for kind in ("hits", "misses", "evictions")
}
LOADED_BYTES = Gauge(
    PREFIX + "model_loaded_bytes",
    "Memory held by a loaded model version",
    LABELS,
    multiprocess_mode="livesum",
)


def configure(device: str) -> None:
    """Label this process's cache and load metrics with device (cpu, cuda:N)."""
    global _device
    _device = device


def cache_event(kind: str, model: str, version: str, count: int = 1) -> None:
    """Count session cache hits, misses or evictions of one model version."""
    CACHE[kind].labels(model, version, _device).inc(count)


def observe_load(model: str, version: str, seconds: float) -> None:
    """Record the time one model load took."""
    LOAD.labels(model, version, _device).observe(seconds)


def observe_loaded(model: str, version: str, nbytes: int) -> None:
    """Record the memory a model version holds in this worker now (0 once unloaded)."""
    LOADED_BYTES.labels(model, version, _device).set(nbytes)


@functools.lru_cache(maxsize=1024)
def _children(model: str, version: str, device: str) -> tuple[Any, ...]:
    """The labelled success counter and histograms of one model version; labels() is slow."""
    labels = (model, version, device)
    return tuple(
        metric.labels(*labels) for metric in (SUCCESS, QUEUE, DECODE, COMPUTE, ENCODE, BATCH)
    )


def observe_inference(
    model: str,
    version: str,
    device: str,
    *,
    outcome: str = "succeeded",
    queue_wait_s: float | None = None,
    decode_s: float | None = None,
    compute_s: float | None = None,
    encode_s: float | None = None,
    batch_size: int | None = None,
) -> None:
    """Count one request by outcome and record whichever of its timings are known."""
    success, queue, decode, compute, encode, batch = _children(model, version, device)
    if outcome == "succeeded":
        success.inc()
    else:
        FAILURE.labels(model, version, device, outcome).inc()
    timings = ((queue, queue_wait_s), (decode, decode_s), (compute, compute_s), (encode, encode_s))
    for histogram, seconds in timings:
        if seconds is not None:
            histogram.observe(max(seconds, 0.0))
    if batch_size is not None:
        batch.observe(batch_size)


def outcome_of(reply: Reply) -> str:
    """succeeded, expired, cancelled or failed, as the job record will say."""
    if reply.ok:
        return "succeeded"
    if reply.expired:
        return "expired"
    return "cancelled" if reply.cancelled else "failed"


def log_job(job_id: str, model: str, version: str, **fields: Any) -> None:
    """The one structured line per job: ids, model, timings, batch size and outcome."""
    if not log.isEnabledFor(logging.INFO):
        return
    document = {"job_id": job_id, "model": model, "version": version, **fields}
    text = " ".join(f"{key}={_shown(value)}" for key, value in document.items())
    log.info("job %s", text, extra={FIELDS: document})


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _seconds(milliseconds: float | None) -> float | None:
    return milliseconds / 1000 if milliseconds is not None else None


def report_job(
    device: str, model: str, version: str, meta: RequestMeta, task_id: str, reply: Reply,
    received_at: float,
) -> None:  # fmt: skip
    """Metrics and the log line of one finished request of a job, from its trace and reply."""
    version = reply.model_version or version
    enqueued = meta.enqueued_at
    queue_wait = max(received_at - enqueued, 0.0) if enqueued is not None else None
    outcome = outcome_of(reply)
    ran = outcome == "succeeded"
    batch_size = int(reply.batch_size or 1) if ran else None
    compute = _seconds(reply.compute_ms)
    observe_inference(
        model, version, device, outcome=outcome, queue_wait_s=queue_wait,
        decode_s=_seconds(reply.decode_ms), compute_s=compute,
        encode_s=_seconds(reply.encode_ms), batch_size=batch_size,
    )  # fmt: skip
    log_job(
        task_id, model, version, outcome=outcome,
        queue_wait_ms=None if queue_wait is None else queue_wait * 1000,
        compute_ms=None if compute is None else compute * 1000, batch_size=batch_size,
        request_id=meta.request_id, error=None if ran else reply.error,
    )  # fmt: skip


def gpu_memory(device: str) -> dict[str, int] | None:
    """Used and total bytes of GPU memory on a cuda device, through NVML; None where it
    cannot be read (a CPU device, no nvidia-ml-py, no driver)."""
    if not device.startswith("cuda"):
        return None
    try:
        import pynvml

        pynvml.nvmlInit()
        index = int(device.partition(":")[2] or 0)
        info = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index))
    except Exception:
        return None
    return {"used": int(info.used), "total": int(info.total)}


class GpuMemoryCollector:
    """GPU memory used and total on the worker's CUDA device, read through NVML at scrape time."""

    def __init__(self, device: str) -> None:
        self.device = device

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The two gauges, or nothing when NVML (nvidia-ml-py) is missing or fails."""
        memory = gpu_memory(self.device)
        if memory is None:  # no NVML here: export nothing rather than fail the scrape
            return
        for name, value in memory.items():
            family = GaugeMetricFamily(
                f"{PREFIX}gpu_memory_{name}_bytes", f"GPU memory {name}", labels=["device"]
            )
            family.add_metric([self.device], float(value))
            yield family


def serve(host: str, port: int, device: str) -> bool:
    """Export this worker's metrics on host:port; False, with one warning, if it cannot."""
    collectors = [GpuMemoryCollector(device)] if device.startswith("cuda") else []
    registry = serving_registry(*collectors)
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        log.warning("worker metrics are off: cannot listen on %s:%d (%s)", host, port, exc)
        return False
    log.info("worker metrics on http://%s:%d/metrics", host, port)
    return True
