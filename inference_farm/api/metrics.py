"""GET /metrics, and the bookkeeping of every request behind it: latency, status, request id."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import GaugeMetricFamily

from inference_farm.api.auth import scope
from inference_farm.api.context import farm
from inference_farm.broker.names import CONTROL_QUEUE, model_queue
from inference_farm.registry import catalog
from inference_farm.registry.jobs import count_by_status
from inference_farm.settings import Settings
from inference_farm.telemetry import metrics, request_ids

log = logging.getLogger(__name__)
# Answers that may name a model the caller cannot see, or one that does not exist: their
# model label stays empty, so that nobody can mint label values by guessing names.
UNLABELLED = frozenset({401, 403, 404})


def note_model(name: str) -> None:
    """Label this request's metrics with model name (for routes that take it from the body)."""
    g.setdefault("metrics_model", name)


def _start() -> None:
    g.metrics_started = time.perf_counter()
    g.request_id = request_ids.accept(request.headers.get(request_ids.HEADER))
    request_ids.bind(g.request_id)


def _finish(response: Response) -> Response:
    response.headers[request_ids.HEADER] = g.get("request_id") or request_ids.accept(None)
    started = g.get("metrics_started")
    if started is not None:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        model = g.get("metrics_model") or (request.view_args or {}).get("name", "")
        if response.status_code in UNLABELLED:
            model = ""
        elapsed = time.perf_counter() - started
        metrics.observe_request(request.method, route, model, response.status_code, elapsed)
    return response


def _unbind(_exc: BaseException | None) -> None:
    request_ids.bind(None)


class FarmCollector:
    """Read at scrape time: the depth of every queue and the job records by status."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The queue depth and jobs gauges, leaving out whatever cannot be read now."""
        context = farm()
        session = context.db.session()
        depth = GaugeMetricFamily(
            metrics.PREFIX + "queue_depth", "Jobs waiting on a queue", labels=["queue", "model"]
        )
        jobs = GaugeMetricFamily(
            metrics.PREFIX + "jobs",
            "Job records by kind (infer, validate), model and status",
            labels=["kind", "model", "status"],
        )
        try:
            names = [model.name for model in catalog.list_models(session)]
            for kind, model, status, count in count_by_status(session):
                jobs.add_metric([kind, model, status], count)
            queues = [(CONTROL_QUEUE, ""), *((model_queue(n), n) for n in names)]
            for queue, model in queues:
                depth.add_metric([queue, model], context.queues.depth(queue))
        except Exception as exc:  # a scrape must answer even during an outage
            log.warning("metrics: could not read the queues or jobs: %s", exc)
        finally:
            context.db.remove()
        yield depth
        yield jobs


def _metrics() -> Response:
    """Prometheus metrics of the API processes, the queues and the jobs"""
    return Response(metrics.render(FarmCollector()), content_type=CONTENT_TYPE_LATEST)


def install(app: Flask, settings: Settings) -> None:
    """Time and label every request, echo its request id, and serve /metrics.

    Call before any other before_request hook, so that refused requests are counted too.
    """
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_unbind)

    def view() -> Response:
        return _metrics()

    view.__doc__ = _metrics.__doc__
    app.add_url_rule("/metrics", "metrics", scope(settings.metrics_scope)(view))
