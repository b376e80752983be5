"""Fan-out of the event stream: one snapshot per interval, however many consoles watch,
and each registry change the moment it is published."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from inference_farm.api.console import snapshot
from inference_farm.api.context import Farm
from inference_farm.broker import events

log = logging.getLogger(__name__)
BACKLOG = 32  # events a slow viewer may lag by before its oldest are dropped
Event = tuple[str, Any]


class EventHub:
    """Viewers join with a queue of events; the hub runs only while someone watches."""

    def __init__(self, context: Farm, run: Callable[..., Any]) -> None:
        self.context = context
        self.run = run  # awaitable work(*args) on the API's threads
        self.viewers: set[asyncio.Queue[Event]] = set()
        self.latest: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop: threading.Event | None = None

    def join(self) -> asyncio.Queue[Event]:
        """A new viewer's queue, primed with the latest snapshot."""
        viewer: asyncio.Queue[Event] = asyncio.Queue(BACKLOG)
        if self.latest is not None:
            viewer.put_nowait(("snapshot", self.latest))
        self.viewers.add(viewer)
        if self._task is None or self._task.done():
            self._start(asyncio.get_running_loop())
        return viewer

    def leave(self, viewer: asyncio.Queue[Event]) -> None:
        """Forget a viewer; the last one out stops the hub."""
        self.viewers.discard(viewer)
        if not self.viewers:
            self._halt()

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._task = loop.create_task(self._snapshots())
        self._stop = stop = threading.Event()
        deliver = lambda changes: loop.call_soon_threadsafe(self.publish, "change", changes)  # noqa: E731
        thread = threading.Thread(
            target=events.listen, args=(self.context.queues.redis, deliver, stop),
            name="event-listener", daemon=True,
        )  # fmt: skip
        thread.start()

    def _halt(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._stop is not None:
            self._stop.set()
            self._stop = None
        self.latest = None

    async def _snapshots(self) -> None:
        interval = self.context.settings.events_interval
        while True:
            try:
                self.latest = await self.run(snapshot.take, self.context)
                self.publish("snapshot", self.latest)
            except asyncio.CancelledError:
                raise
            except Exception:  # the stream outlives one failed snapshot
                log.exception("event stream: the snapshot failed")
            await asyncio.sleep(interval)

    def publish(self, kind: str, data: Any) -> None:
        """Give every viewer the event; a viewer that lags drops its oldest."""
        for viewer in list(self.viewers):
            if viewer.full():
                viewer.get_nowait()
            viewer.put_nowait((kind, data))
