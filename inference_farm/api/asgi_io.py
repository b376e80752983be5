"""The few ASGI reads and writes the API's own lanes share: headers in, a whole response out."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
JSON = {"Content-Type": "application/json"}
# A scope extension: an asyncio.Event that a streaming response puts in its scope, and that
# the server sets when it shuts down (api/wire.py), so that the stream ends then.
DRAIN = "inference_farm.drain"


def drain_event(scope: Scope) -> asyncio.Event:
    """A new event in scope that the server sets as it stops."""
    event = asyncio.Event()
    scope.setdefault("extensions", {})[DRAIN] = event
    return event


def json_bytes(document: dict[str, Any]) -> bytes:
    """document as JSON bytes."""
    return orjson.dumps(document, default=str)


def headers_of(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name; a repeated header keeps its last value."""
    return {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}


def raw_headers(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    """headers as ASGI wants them."""
    return [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]


async def respond(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    """Send a whole response."""
    raw = raw_headers(headers)
    raw.append((b"content-length", str(len(body)).encode("ascii")))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
