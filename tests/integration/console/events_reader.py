"""A /v1/events reader for tests: reads the stream on a thread, waits for an event with a bound."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

Event = tuple[str, Any]


class EventReader:
    """The events of one stream, in order, as (kind, data)."""

    def __init__(self, url: str, key: str) -> None:
        self.events: queue.Queue[Event] = queue.Queue()
        self.seen: list[Event] = []
        headers = {"Authorization": f"Bearer {key}"}
        self.client = httpx.Client(timeout=httpx.Timeout(30, read=30))
        self.response = self.client.send(
            self.client.build_request("GET", url + "/v1/events", headers=headers), stream=True
        )
        self.closed = threading.Event()
        self.ended_cleanly = False  # the server ended the stream, rather than dropping it
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        kind, data = "message", ""
        try:
            for line in self.response.iter_lines():
                if line.startswith("event: "):
                    kind = line[len("event: ") :]
                elif line.startswith("data: "):
                    data = line[len("data: ") :]
                elif line == "" and data:
                    self.events.put((kind, json.loads(data)))
                    kind, data = "message", ""
            self.ended_cleanly = True
        except httpx.HTTPError:
            pass
        finally:
            self.closed.set()

    def wait(self, match: Callable[[str, Any], bool], timeout: float = 30) -> Event:
        """The first event, from now or already seen, for which match(kind, data) holds."""
        for event in self.seen:
            if match(*event):
                return event
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(event)
            if match(*event):
                return event
        raise AssertionError(f"no matching event in {timeout}s; saw {[k for k, _ in self.seen]}")

    def close(self) -> None:
        """End the stream."""
        self.response.close()
        self.client.close()
