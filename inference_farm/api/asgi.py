"""The API as one ASGI app: OIP infer answered on the event loop, every other route by Flask.

Sync inference is the hot path: here a request costs no thread and no WSGI round, and waits
for its coalesced job as a future. It runs the same steps as the Flask view (api/infer.py)
and answers the same way: the same auth, limits, error bodies, request ids and metrics.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import re
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from a2wsgi import WSGIMiddleware
from flask import Flask

from inference_farm.api import dataplane
from inference_farm.api.app import create_app
from inference_farm.api.auth import bearer, key_for, quick_key
from inference_farm.api.context import Farm
from inference_farm.api.errors import INTERNAL, error_headers, log_farm_error
from inference_farm.api.metrics import UNLABELLED
from inference_farm.api.routes import infer as oip
from inference_farm.errors import FarmError, PayloadTooLarge
from inference_farm.settings import Settings, get_settings
from inference_farm.telemetry import metrics, request_ids
from inference_farm.telemetry.request_ids import trace_fields

log = logging.getLogger(__name__)
# Flask's <name> matches one path segment; these are its rules, used as metric labels.
INFER_PATH = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")
ROUTE = "/v2/models/<name>/infer"
ROUTE_VERSION = "/v2/models/<name>/versions/<version>/infer"
Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _Gone(Exception):
    """The client disconnected before its request body arrived."""


class InferLane:
    """POST /v2/models/{m}[/versions/{v}]/infer on the event loop."""

    def __init__(self, context: Farm) -> None:
        self.farm = context
        self.settings = context.settings
        # Registry reads on a cache miss, rate limits and uncoalesced waits block: they run
        # here, never on the loop.
        self.threads = ThreadPoolExecutor(context.settings.api_threads, "infer-lane")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one infer request."""
        started = time.perf_counter()
        name, version = INFER_PATH.fullmatch(scope["path"]).groups()  # type: ignore[union-attr]
        headers = _headers(scope)
        request_id = request_ids.accept(headers.get("x-request-id"))
        token = request_ids.bind(request_id)
        try:
            status, body, extra = await self._answer(receive, headers, name, version)
        except _Gone:
            return
        finally:
            request_ids.unbind(token)
        extra[request_ids.HEADER] = request_id
        await _respond(send, status, body, extra)
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
            document = {"error": error.message, **error.extra}
            return error.status, _json(document), {**_JSON, **error_headers(error)}
        except (_Gone, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("unhandled error on POST %s", _path(name, version))
            return 500, _json({"error": INTERNAL}), dict(_JSON)

    async def _infer(
        self, receive: Receive, headers: dict[str, str], name: str, version: str | None
    ) -> tuple[bytes, dict[str, str]]:
        context, settings = self.farm, self.settings
        authorization = headers.get("authorization", "")
        if quick_key(context, authorization, "infer", name) is None:
            where = f"POST {_path(name, version)}"
            await self._blocking(key_for, context, authorization, "infer", name, where)
        elif context.registry.key_refresh_due(bearer(authorization)):
            self._in_background(context.registry.refresh_key, bearer(authorization))
        raw = await _read_body(receive, headers, settings.max_request_bytes)
        parsed = oip.read_request(
            raw, headers.get("inference-header-content-length"), settings.max_tensor_elements
        )
        deadline = oip.deadline_of(parsed, settings.request_timeout)
        found = context.registry.cached_served(name, version)
        if found is not None:
            prepared = dataplane.check(found, name, parsed, settings)
            if context.registry.versions.claim_refresh((name, version)):
                self._in_background(context.registry.refresh_served, name, version)
        else:
            prepared = await self._blocking(oip.prepare, context, name, version, parsed)
        priority = oip.priority_of(parsed)
        if settings.coalesce_requests:
            reply = await context.coalescer.infer(prepared, deadline, priority, trace_fields())
        else:
            reply = await self._blocking(
                oip.wait_uncoalesced, context, prepared, deadline, priority
            )
        return oip.render(name, parsed, reply)

    async def _blocking(self, work: Callable[..., Any], *args: Any) -> Any:
        """work(*args) on the lane's threads, with this request's context (its request id)."""
        call = functools.partial(contextvars.copy_context().run, self._released, work, *args)
        return await asyncio.get_running_loop().run_in_executor(self.threads, call)

    def _in_background(self, refresh: Callable[..., Any], *args: Any) -> None:
        """refresh(session, *args) on the lane's threads, unawaited: a cached registry entry
        past half its life is read afresh before it expires, off every request's path."""

        def run() -> None:
            try:
                refresh(self.farm.db.session(), *args)
            except Exception as exc:  # the entry is dropped; the next request reads it
                log.info("refreshing a cached registry entry failed: %s", exc)
            finally:
                self.farm.db.remove()

        self.threads.submit(run)

    def _released(self, work: Callable[..., Any], *args: Any) -> Any:
        try:
            return work(*args)
        finally:
            self.farm.db.remove()  # the thread's session, if the work opened one


_JSON = {"Content-Type": "application/json"}


def _json(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document, default=str)


def _path(name: str, version: str | None) -> str:
    middle = f"/versions/{version}" if version is not None else ""
    return f"/v2/models/{name}{middle}/infer"


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name; a repeated header keeps its last value."""
    return {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}


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


async def _respond(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode("ascii")))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


def create_asgi(settings: Settings | None = None) -> Callable[..., Awaitable[None]]:
    """The API for settings as an ASGI app: the infer lane, and Flask for the rest."""
    settings = settings or get_settings()
    flask_app: Flask = create_app(settings)
    lane = InferLane(flask_app.extensions["farm"])
    wsgi = WSGIMiddleware(flask_app, workers=settings.api_threads)

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and INFER_PATH.fullmatch(scope["path"])
        ):
            await lane(scope, receive, send)
        elif scope["type"] == "http":
            await wsgi(scope, receive, send)

    return app
