"""Request ids: taken from X-Request-ID or made up, carried from the API to the worker."""

from __future__ import annotations

import contextvars
import os
import re
import time
from typing import Any

HEADER = "X-Request-ID"
# Short and plain, so that a client's id is safe in a log line, a header and a Redis key.
_SAFE = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)


def accept(incoming: str | None) -> str:
    """The client's id when it is short and safe, else a new one."""
    if incoming and _SAFE.fullmatch(incoming):
        return incoming
    return os.urandom(16).hex()  # as random as uuid4().hex, and cheaper


def current() -> str | None:
    """The id of the request this thread is serving, if any."""
    return _current.get()


def bind(request_id: str | None) -> contextvars.Token:
    """Make request_id the current one; pass the token to unbind."""
    return _current.set(request_id)


def unbind(token: contextvars.Token) -> None:
    """Restore the id that was current before bind."""
    _current.reset(token)


def trace_fields() -> dict[str, Any]:
    """What a queued job carries to be followed: the request id and when it was queued."""
    return {"request_id": current(), "enqueued_at": time.time()}
