"""The API's server process: gunicorn's worker running uvicorn, one write per response.

uvicorn writes a response's status line and headers, then its body, as two writes: two
system calls, two segments, and a client woken twice. On a small machine the second write
cost more than the whole rest of answering an infer request. The transport here gathers
the writes made in one turn of the event loop and sends them together at its end.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn_worker import UvicornWorker


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


class FarmWorker(UvicornWorker):
    """gunicorn's worker process serving the ASGI app with uvicorn (uvloop where installed,
    httptools, one write per response); no access log or Server header of its own."""

    CONFIG_KWARGS: ClassVar[dict[str, Any]] = {
        "loop": "auto",
        "http": GatheringHttpToolsProtocol,
        "lifespan": "off",  # nothing to start or stop: the app builds itself on load
        "access_log": False,
        "server_header": False,
    }
