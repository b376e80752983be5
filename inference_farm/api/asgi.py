"""The API as one ASGI app: OIP infer and the event stream answered on the event loop, every
other route by Flask.

Sync inference is the hot path: here a request costs no thread and no WSGI round, and waits
for its coalesced job as a future, through the one data plane (api/dataplane.py). The error
bodies, request ids and metrics are the ones Flask's routes give.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable

from a2wsgi import WSGIMiddleware
from flask import Flask

from inference_farm.api import grpc_server
from inference_farm.api.app import create_app
from inference_farm.api.asgi_io import JSON, Receive, Scope, Send, headers_of, json_bytes, respond
from inference_farm.api.console import stream
from inference_farm.api.context import Farm
from inference_farm.api.dataplane import DataPlane
from inference_farm.api.errors import INTERNAL, error_body, error_headers, log_farm_error
from inference_farm.api.metrics import UNLABELLED
from inference_farm.errors import FarmError, InvalidInput, PayloadTooLarge
from inference_farm.protocol.codec import build_response, parse_request
from inference_farm.protocol.messages import Reply
from inference_farm.protocol.request import InferRequest
from inference_farm.settings import Settings, get_settings
from inference_farm.telemetry import metrics, request_ids

log = logging.getLogger(__name__)
# Flask's <name> matches one path segment; these are its rules, used as metric labels.
INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
ROUTE = "/v2/models/<name>/infer"
ROUTE_VERSION = "/v2/models/<name>/versions/<version>/infer"
HEADER_LENGTH = "Inference-Header-Content-Length"


class _Gone(Exception):
    """The client disconnected before its request body arrived."""


class InferLane:
    """POST /v2/models/{m}[/versions/{v}]/infer on the event loop: HTTP framing around the
    one data plane (the body, the request id, the error body, the metrics)."""

    def __init__(self, context: Farm) -> None:
        self.plane = DataPlane(context)
        self.settings = context.settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one infer request."""
        started = time.perf_counter()
        name, version = INFER_PATH.fullmatch(scope["path"]).groups()  # type: ignore[union-attr]
        headers = headers_of(scope)
        request_id = request_ids.accept(headers.get("x-request-id"))
        token = request_ids.bind(request_id)
        try:
            status, body, extra = await self._answer(receive, headers, name, version)
        except _Gone:
            return
        finally:
            request_ids.unbind(token)
        extra[request_ids.HEADER] = request_id
        await respond(send, status, body, extra)
        label = "" if status in UNLABELLED else name
        route = ROUTE_VERSION if version is not None else ROUTE
        metrics.observe_request("POST", route, label, status, time.perf_counter() - started)

    async def _answer(
        self, receive: Receive, headers: dict[str, str], name: str, version: str | None
    ) -> tuple[int, bytes, dict[str, str]]:
        try:
            body, extra = await self._infer(receive, headers, name, version)
            return 200, body, extra
        except FarmError as error:
            log_farm_error(error)
            document = error_body(_path(name, version), error.status, error.message, **error.extra)
            return error.status, json_bytes(document), {**JSON, **error_headers(error)}
        except (_Gone, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("unhandled error on POST %s", _path(name, version))
            return 500, json_bytes(error_body(_path(name, version), 500, INTERNAL)), dict(JSON)

    async def _infer(
        self, receive: Receive, headers: dict[str, str], name: str, version: str | None
    ) -> tuple[bytes, dict[str, str]]:
        authorization = headers.get("authorization", "")
        await self.plane.authorize(authorization, name, f"POST {_path(name, version)}")
        raw = await _read_body(receive, headers, self.settings.max_request_bytes)
        parsed = read_request(
            raw, headers.get("inference-header-content-length"), self.settings.max_tensor_elements
        )
        return render(name, parsed, await self.plane.infer(name, version, parsed))


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


def render(name: str, parsed: InferRequest, reply: Reply) -> tuple[bytes, dict[str, str]]:
    """The response body to a worker's reply and its headers: JSON, or with binary outputs."""
    body, header_length = build_response(
        name, str(reply.model_version), parsed.id, reply.outputs or {}, parsed.outputs,
        binary_default=parsed.binary_data_output,
    )  # fmt: skip
    if header_length is None:
        return body, dict(JSON)
    return body, {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(header_length)}


def _path(name: str, version: str | None) -> str:
    middle = f"/versions/{version}" if version is not None else ""
    return f"/v2/models/{name}{middle}/infer"


async def _read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    """The whole request body; 413 as soon as it is known to be over limit bytes."""
    too_large = PayloadTooLarge(f"the request body is larger than the limit of {limit} bytes")
    declared = headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _lifespan(
    receive: Receive, send: Send, settings: Settings, flask_app: Flask, plane: DataPlane
) -> None:
    """Start the gRPC server beside HTTP, on this event loop; stop it on shutdown."""
    server = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                server = await grpc_server.start(settings, flask_app, plane)
            except Exception as exc:  # a taken port, unreadable TLS files: say so, do not serve
                log.exception("the gRPC server did not start")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await grpc_server.stop(server)
            await send({"type": "lifespan.shutdown.complete"})
            return


def create_asgi(settings: Settings | None = None) -> Callable[..., Awaitable[None]]:
    """The API for settings as an ASGI app: the infer lane, and Flask for the rest."""
    settings = settings or get_settings()
    flask_app: Flask = create_app(settings)
    lane = InferLane(flask_app.extensions["farm"])
    wsgi = WSGIMiddleware(flask_app, workers=settings.api_threads)
    events = stream.EventStream(flask_app.extensions["farm"], lane.plane)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, settings, flask_app, lane.plane)
            return
        if scope["type"] != "http":
            return
        if scope["path"] == stream.PATH:
            await events(scope, receive, send)
        elif not INFER_PATH.fullmatch(scope["path"]):
            await wsgi(scope, receive, send)
        elif scope["method"] == "POST":
            await lane(scope, receive, send)
        else:
            message = f"{scope['method']} is not allowed here: send POST"
            error = error_body(scope["path"], 405, message)
            await respond(send, 405, json_bytes(error), {**JSON, "Allow": "POST"})

    return app
