"""GET /v1/events: the farm as Server-Sent Events, for the console and any other watcher.

A snapshot comes every events_interval seconds, and a change (a version's or a job's new
status) the moment it commits. The key is checked at the start and again every
events_interval seconds: a revoked key's stream ends with an error event. Each event carries
only what the key's scopes may see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from inference_farm.api.asgi_io import (
    JSON,
    Receive,
    Scope,
    Send,
    drain_event,
    headers_of,
    json_bytes,
    raw_headers,
    respond,
)
from inference_farm.api.auth import ANY_KEY, allows, bearer, key_for
from inference_farm.api.console.hub import EventHub
from inference_farm.api.console.snapshot import for_key
from inference_farm.api.context import Farm
from inference_farm.api.dataplane import DataPlane
from inference_farm.api.errors import error_body, error_headers, log_farm_error
from inference_farm.errors import FarmError
from inference_farm.registry.models import ApiKey

log = logging.getLogger(__name__)
PATH = "/v1/events"
STREAM_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",
}


def encode(kind: str, data: Any) -> bytes:
    """One Server-Sent Event."""
    return b"event: " + kind.encode() + b"\ndata: " + json_bytes(data) + b"\n\n"


def visible(key: ApiKey, kind: str, data: Any) -> Any:
    """What of one event key may see; None for nothing."""
    scopes = list(key.scopes)
    if kind == "snapshot":
        return for_key(data, scopes)
    if kind != "change":
        return data
    shown = []
    for change in data:
        if change.get("type") == "version" and allows(key, "models:read"):
            shown.append(change)
        elif change.get("type") == "job" and _sees_job(key, change):
            shown.append({k: v for k, v in change.items() if k != "owner"})
    return shown or None


def _sees_job(key: ApiKey, change: dict[str, Any]) -> bool:
    if "admin" in key.scopes:
        return True
    return allows(key, "jobs") and change.get("owner") == key.id


class EventStream:
    """The /v1/events lane: one hub per API process, one stream per viewer."""

    def __init__(self, context: Farm, plane: DataPlane) -> None:
        self.farm = context
        self.plane = plane
        self.hub = EventHub(context, plane.blocking)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer GET /v1/events with a stream that lasts until the client leaves."""
        if scope["method"] != "GET":
            body = error_body(PATH, 405, f"{scope['method']} is not allowed here: send GET")
            await respond(send, 405, json_bytes(body), {**JSON, "Allow": "GET"})
            return
        authorization = headers_of(scope).get("authorization", "")
        try:
            key = await self.plane.blocking(
                key_for, self.farm, authorization, ANY_KEY, None, f"GET {PATH}"
            )
        except FarmError as error:
            log_farm_error(error)
            body = error_body(PATH, error.status, error.message, **error.extra)
            await respond(send, error.status, json_bytes(body), {**JSON, **error_headers(error)})
            return
        start = {"type": "http.response.start", "status": 200}
        await send({**start, "headers": raw_headers(STREAM_HEADERS)})
        await self._stream(key, bearer(authorization), _ended(scope, receive), send)

    async def _stream(self, key: ApiKey, token: str, gone: asyncio.Future, send: Send) -> None:
        viewer = self.hub.join()
        try:
            hello = {"key": key.name, "scopes": list(key.scopes),
                     "interval": self.farm.settings.events_interval}  # fmt: skip
            await _write(send, encode("hello", hello))
            checked = time.monotonic()
            while not gone.done():
                if time.monotonic() - checked > self.farm.settings.events_interval:
                    key = await self._recheck(token, send)
                    if key is None:
                        return
                    checked = time.monotonic()
                chunk = await _next(viewer, gone, key, self.farm.settings.events_interval)
                if chunk is not None:
                    await _write(send, chunk)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            return  # the client went away mid-write
        finally:
            gone.cancel()
            self.hub.leave(viewer)

    async def _recheck(self, token: str, send: Send) -> ApiKey | None:
        """The key afresh; None, after an error event, once it is revoked or expired."""
        key = await self.plane.blocking(_live_key, self.farm, token)
        if key is None:
            message = "the API key is unknown, revoked or expired"
            await _write(send, encode("error", {"status": 401, "message": message}))
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        return key


def _live_key(context: Farm, token: str) -> ApiKey | None:
    """The key of token if it is still live (on the plane's threads: a registry read)."""
    return context.registry.key(context.db.session(), token)


async def _next(
    viewer: asyncio.Queue, gone: asyncio.Future, key: ApiKey, quiet_s: float
) -> bytes | None:
    """The next event key may see; after quiet_s with none, a comment line (it keeps proxies
    from closing a quiet stream); None when the client left."""
    getting = asyncio.ensure_future(viewer.get())
    done, _ = await asyncio.wait(
        {getting, gone}, timeout=quiet_s, return_when=asyncio.FIRST_COMPLETED
    )
    if getting not in done:
        getting.cancel()
        return None if gone.done() else b": keep-alive\n\n"
    kind, data = getting.result()
    shown = visible(key, kind, data)
    return None if shown is None else encode(kind, shown)


async def _write(send: Send, chunk: bytes) -> None:
    await send({"type": "http.response.body", "body": chunk, "more_body": True})


def _ended(scope: Scope, receive: Receive) -> asyncio.Future:
    """Done when the client disconnects or the server shuts down."""
    drain = drain_event(scope)

    async def wait() -> None:
        with contextlib.suppress(Exception):

            async def disconnected() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass

            tasks = {asyncio.ensure_future(disconnected()), asyncio.ensure_future(drain.wait())}
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()

    return asyncio.ensure_future(wait())
