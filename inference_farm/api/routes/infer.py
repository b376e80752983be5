"""Open Inference Protocol inference: POST /v2/models/{m}[/versions/{v}]/infer, waits for it.

The API server answers this route on its event loop (api/asgi.py); the Flask view here
serves it under a plain WSGI server. Both are thin over the same steps below.
"""

from __future__ import annotations

import time

from flask import Response, request
from flask_smorest import Blueprint

from inference_farm.api import dataplane
from inference_farm.api.auth import scope
from inference_farm.api.context import Farm, farm
from inference_farm.errors import InvalidInput
from inference_farm.protocol.codec import InferRequest, build_response, parse_request
from inference_farm.telemetry.request_ids import trace_fields

blp = Blueprint(
    "infer", __name__, url_prefix="/v2", description="Inference (Open Inference Protocol)"
)
HEADER_LENGTH = "Inference-Header-Content-Length"
MICROSECONDS = 1e6


def read_request(body: bytes, raw_length: str | None, max_elements: int) -> InferRequest:
    """The infer request in body: JSON, or JSON plus binary tensor data (Triton's extension)."""
    header_length = None
    if raw_length is not None:
        if not raw_length.isdigit():
            raise InvalidInput(
                f"{HEADER_LENGTH} must be a non-negative integer, got {raw_length!r}"
            )
        header_length = int(raw_length)
    return parse_request(body, header_length, max_elements=max_elements)


def deadline_of(parsed: InferRequest, default_timeout: float) -> float:
    """Epoch seconds the answer is due by: parameters.timeout (µs, as in Triton) or the default."""
    timeout = parsed.parameters.get("timeout")
    if timeout is None:
        return time.time() + default_timeout
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise InvalidInput(
            f"parameters.timeout must be a positive number of microseconds, got {timeout!r}"
        )
    return time.time() + timeout / MICROSECONDS


def priority_of(parsed: InferRequest) -> int:
    """parameters.priority, 0-9 (9, the default, most urgent)."""
    return dataplane.check_priority(parsed.parameters.get("priority", dataplane.MAX_PRIORITY))


def prepare(
    context: Farm, name: str, version: str | None, parsed: InferRequest
) -> dataplane.Prepared:
    """The checked request for the served version; reads the registry unless cached."""
    try:
        return dataplane.prepare(
            context.db.session(), name, version, parsed, context.registry,
            context.settings,
        )  # fmt: skip
    finally:
        context.db.remove()  # no connection held while waiting for the worker


def render(name: str, parsed: InferRequest, reply: dict) -> tuple[bytes, dict[str, str]]:
    """The response body to a worker's reply and its headers: JSON, or with binary outputs."""
    body, header_length = build_response(
        name, reply["model_version"], parsed.id, reply["outputs"], parsed.outputs,
        binary_default=parsed.binary_data_output,
    )  # fmt: skip
    if header_length is None:
        return body, {"Content-Type": "application/json"}
    return body, {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(header_length)}


def wait_uncoalesced(
    context: Farm, prepared: dataplane.Prepared, deadline: float, priority: int
) -> dict:
    """The reply to a request sent as a job of its own, through the result backend."""
    task_id = dataplane.submit(
        context.celery, context.queues, prepared, deadline, context.settings.max_queue_length,
        priority=priority,
    )  # fmt: skip
    return dataplane.wait(context.celery, task_id, deadline)


@blp.route("/models/<name>/infer", methods=["POST"])
@blp.route("/models/<name>/versions/<version>/infer", methods=["POST"])
@scope("infer")
def infer(name: str, version: str | None = None) -> Response:
    """Run inference and wait for the answer (JSON, or Triton's binary tensor extension)"""
    context = farm()
    limit = context.settings.max_tensor_elements
    parsed = read_request(request.get_data(cache=False), request.headers.get(HEADER_LENGTH), limit)
    deadline = deadline_of(parsed, context.settings.request_timeout)
    prepared = prepare(context, name, version, parsed)
    priority = priority_of(parsed)
    if context.settings.coalesce_requests:
        reply = context.coalescer.infer_blocking(prepared, deadline, priority, trace_fields())
    else:
        reply = wait_uncoalesced(context, prepared, deadline, priority)
    body, headers = render(name, parsed, reply)
    return Response(body, headers=headers)
