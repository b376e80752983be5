"""The API's server process: gunicorn's worker running uvicorn, one write per response.

uvicorn writes a response's status line and headers, then its body, as two writes: two
system calls, two segments, and a client woken twice. On a small machine the second write
cost more than the whole rest of answering an infer request. The transport here gathers
the writes made in one turn of the event loop and sends them together at its end.

A client gets deadlines, since each connection holds a descriptor: its headers within
api_header_timeout (uvicorn has none), its body within api_body_timeout plus a second per
api_body_min_rate bytes (Apache's mod_reqtimeout rule), else 408 and the connection closes;
an idle keep-alive connection closes after api_keepalive_timeout (uvicorn's own timer).
Past api_max_connections, uvicorn's limit_concurrency answers 503, here as the farm's JSON
error with Retry-After.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import resource
from dataclasses import dataclass
from typing import Any, ClassVar

from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker

from inference_farm.api.asgi_io import DRAIN
from inference_farm.api.errors import error_body
from inference_farm.settings import Settings

log = logging.getLogger(__name__)
RETRY_AFTER_S = 1
# Descriptors a worker process needs besides its clients': Redis, the registry, logs, pipes.
SPARE_FDS = 256


class _GatheringTransport:
    """A transport whose writes in one loop turn leave as one write; the rest is passed on."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        """Send data with whatever else is written before the loop turns."""
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(data)

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending)
            self._pending.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        """Send what is pending, then close."""
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GatheringHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol whose responses leave in one write each."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Serve the connection through a gathering transport."""
        super().connection_made(_GatheringTransport(transport))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Deadlines:
    """How long a client may take over its request's headers and its body."""

    header_s: float
    body_s: float
    body_min_rate: float

    @classmethod
    def of(cls, settings: Settings) -> Deadlines:
        """The deadlines that settings set."""
        return cls(settings.api_header_timeout, settings.api_body_timeout,
                   settings.api_body_min_rate)  # fmt: skip


class FarmHttpProtocol(GatheringHttpToolsProtocol):
    """The farm's HTTP/1.1 protocol: deadlines on headers and body, a JSON 503 past the limit."""

    def __init__(self, *args: Any, deadlines: Deadlines, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadlines = deadlines
        self._timer: asyncio.TimerHandle | None = None
        self._body_since = 0.0
        self._body_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Serve the connection; its first request's headers are due from now."""
        super().connection_made(transport)
        self._arm(self.deadlines.header_s, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection and its deadline."""
        self._disarm()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        """The server stops: a response that streams until told (the event stream) ends now."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            drain = cycle.scope.get("extensions", {}).get(DRAIN)
            if drain is not None:
                drain.set()
        super().shutdown()

    def on_message_begin(self) -> None:
        """A request starts: on a kept-alive connection, its headers are due from now."""
        super().on_message_begin()
        if self._timer is None:
            self._arm(self.deadlines.header_s, self._headers_late)

    def on_headers_complete(self) -> None:
        """The headers are in: the body's clock starts."""
        self._disarm()
        self._body_since, self._body_bytes = self.loop.time(), 0
        self._arm(self.deadlines.body_s, self._body_check)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """Count the body's bytes: each earns the client 1 / body_min_rate seconds."""
        self._body_bytes += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        """The whole request is in: no deadline until the next one."""
        self._disarm()
        super().on_message_complete()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        if app is service_unavailable:  # uvicorn's limit_concurrency, in the farm's words
            app = self._over_limit
        super()._start_asgi_task(cycle, app)

    async def _over_limit(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        message = (f"the API holds its limit of {self.limit_concurrency} connections; "
                   f"retry after {RETRY_AFTER_S} s")  # fmt: skip
        body = json.dumps(error_body(scope["path"], 503, message)).encode()
        headers = [(b"content-type", b"application/json"), (b"retry-after", b"%d" % RETRY_AFTER_S),
                   (b"content-length", b"%d" % len(body)), (b"connection", b"close")]  # fmt: skip
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def _arm(self, delay: float, callback: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(delay, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_late(self) -> None:
        self._timer = None
        cycle = self.cycle  # on a kept-alive connection, the last request's
        answer = cycle is None or cycle.response_complete
        self._drop(f"the request headers did not arrive within {self.deadlines.header_s:g} s",
                   answer)  # fmt: skip

    def _body_check(self) -> None:
        self._timer = None
        cycle, now = self.cycle, self.loop.time()
        if self.flow.read_paused or (cycle is not None and cycle.waiting_for_100_continue):
            # The server is the one not reading: the client's clock starts again when it does.
            self._body_since, self._body_bytes = now, 0
        d = self.deadlines
        due = self._body_since + d.body_s + self._body_bytes / d.body_min_rate
        if now < due:
            self._timer = self.loop.call_at(due, self._body_check)
            return
        message = (
            f"the request body came slower than {d.body_min_rate:g} bytes/s after {d.body_s:g} s"
        )
        self._drop(message, answer=cycle is not None and not cycle.response_started)

    def _drop(self, message: str, answer: bool) -> None:
        """Close the connection, after a 408 when answer (no response has started)."""
        if self.transport.is_closing():
            return
        log.debug("dropping %s: %s", self.client, message)
        if answer:
            self.transport.write(_timeout_response(self._path(), message))
        self.transport.close()

    def _path(self) -> str:
        scope = self.scope or {}
        return str(scope.get("path") or getattr(self, "url", b"").decode("latin-1"))


def _timeout_response(path: str, message: str) -> bytes:
    body = json.dumps(error_body(path, 408, message)).encode()
    head = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(body))  # fmt: skip
    return head + body


def _raise_fd_limit(connections: int) -> None:
    """Lift this process's soft descriptor limit toward the hard one, to fit connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + SPARE_FDS
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if hard != resource.RLIM_INFINITY and hard < connections + SPARE_FDS:
        log.warning("the descriptor limit %d is too low for api_max_connections=%d",
                    hard, connections)  # fmt: skip


class FarmWorker(UvicornWorker):
    """gunicorn's worker process serving the ASGI app with uvicorn (uvloop where installed,
    httptools, one write per response, the farm's deadlines and connection limit); no access
    log or Server header of its own."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "auto",
        "lifespan": "on",  # the app starts its gRPC server on this loop, and stops it
        "access_log": False,
        "server_header": False,
    }

    def __init__(
        self, age: int, ppid: int, sockets: list[Any], app: Any, timeout: float, cfg: Any,
        log: Any,
    ) -> None:  # fmt: skip
        settings: Settings = app.settings
        self.CONFIG_KWARGS = {  # type: ignore[misc]  # read by UvicornWorker.__init__
            **type(self).CONFIG_KWARGS,
            "http": functools.partial(FarmHttpProtocol, deadlines=Deadlines.of(settings)),
            "timeout_keep_alive": settings.api_keepalive_timeout,
            "limit_concurrency": settings.api_max_connections,
        }
        super().__init__(age, ppid, sockets, app, timeout, cfg, log)

    def init_process(self) -> None:
        """Make room for api_max_connections descriptors, then serve."""
        _raise_fd_limit(self.config.limit_concurrency or 0)
        super().init_process()
