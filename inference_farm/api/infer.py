"""Open Inference Protocol inference: POST /v2/models/{m}[/versions/{v}]/infer, waits for it."""

from __future__ import annotations

import time

from flask import Response, request
from flask_smorest import Blueprint

from inference_farm import dataplane
from inference_farm.api import farm
from inference_farm.api.auth import scope
from inference_farm.errors import InvalidInput
from inference_farm.runtime.codec import InferRequest, build_response, parse_request

blp = Blueprint(
    "infer", __name__, url_prefix="/v2", description="Inference (Open Inference Protocol)"
)
HEADER_LENGTH = "Inference-Header-Content-Length"
MICROSECONDS = 1e6


def read_request() -> InferRequest:
    """The infer request in the body: JSON, or JSON plus binary tensor data."""
    raw_length = request.headers.get(HEADER_LENGTH)
    header_length = None
    if raw_length is not None:
        if not raw_length.isdigit():
            raise InvalidInput(
                f"{HEADER_LENGTH} must be a non-negative integer, got {raw_length!r}"
            )
        header_length = int(raw_length)
    limit = farm().settings.max_tensor_elements
    return parse_request(request.get_data(cache=False), header_length, max_elements=limit)


def deadline_of(parsed: InferRequest) -> float:
    """Epoch seconds the answer is due by: parameters.timeout (µs, as in Triton) or the default."""
    timeout = parsed.parameters.get("timeout")
    if timeout is None:
        return time.time() + farm().settings.request_timeout
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise InvalidInput(
            f"parameters.timeout must be a positive number of microseconds, got {timeout!r}"
        )
    return time.time() + timeout / MICROSECONDS


def _respond(name: str, parsed: InferRequest, reply: dict) -> Response:
    body, header_length = build_response(
        name, reply["model_version"], parsed.id, reply["outputs"], parsed.outputs,
        binary_default=parsed.binary_data_output,
    )  # fmt: skip
    if header_length is None:
        return Response(body, content_type="application/json")
    response = Response(body, content_type="application/octet-stream")
    response.headers[HEADER_LENGTH] = str(header_length)
    return response


@blp.route("/models/<name>/infer", methods=["POST"])
@blp.route("/models/<name>/versions/<version>/infer", methods=["POST"])
@scope("infer")
def infer(name: str, version: str | None = None) -> Response:
    """Run inference and wait for the answer (JSON, or Triton's binary tensor extension)"""
    context = farm()
    parsed = read_request()
    deadline = deadline_of(parsed)
    try:
        prepared = dataplane.prepare(
            context.db.session(), name, version, parsed, context.registry,
            context.settings.max_batch_size,
        )  # fmt: skip
    finally:
        context.db.remove()  # no connection held while waiting for the worker
    priority = dataplane.check_priority(parsed.parameters.get("priority", dataplane.MAX_PRIORITY))
    if context.settings.coalesce_requests:
        reply = context.coalescer.infer(prepared, deadline, priority)
        return _respond(name, parsed, reply)
    task_id = dataplane.submit(
        context.celery, context.queues, prepared, deadline, context.settings.max_queue_length,
        priority=priority,
    )  # fmt: skip
    return _respond(name, parsed, dataplane.wait(context.celery, task_id, deadline))
