"""/v1/events driven in this process through the ASGI app, on the real Redis and PostgreSQL:
the stream, the hub and the snapshot run here, where the server process tests cannot see
them (coverage), and a change committed here reaches the stream."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis

from inference_farm.api.asgi import create_asgi
from inference_farm.broker import events
from inference_farm.registry import Database, changes
from inference_farm.registry.jobs import add_job, cancel_job
from inference_farm.settings import Settings

pytestmark = pytest.mark.integration
BOUND_S = 30


def _scope(key: str | None, method: str = "GET") -> dict[str, Any]:
    headers = [(b"authorization", f"Bearer {key}".encode())] if key else []
    return {"type": "http", "method": method, "path": "/v1/events", "headers": headers,
            "query_string": b""}  # fmt: skip


class Exchange:
    """One request to the app: its receive() waits until told to disconnect."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.leave = asyncio.Event()
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    async def receive(self) -> dict[str, Any]:
        await self.leave.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        for block in message.get("body", b"").decode().split("\n\n"):
            lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            if "event" in lines:
                await self.events.put((lines["event"], json.loads(lines["data"])))

    async def until(self, kind: str, match: Any = lambda _d: True) -> Any:
        async def first() -> Any:
            while True:
                got_kind, data = await self.events.get()
                if got_kind == kind and match(data):
                    return data

        return await asyncio.wait_for(first(), BOUND_S)


async def _watch(settings: Settings, admin_key: str) -> dict[str, Any]:
    app = create_asgi(settings)
    exchange = Exchange()
    task = asyncio.create_task(app(_scope(admin_key), exchange.receive, exchange.send))
    hello = await exchange.until("hello")
    snapshot = await exchange.until("snapshot")
    database = Database(settings.effective_database_url)  # announcing, as a worker's does
    stop = changes.watch(database, events.publisher(redis.Redis.from_url(settings.broker_url)))
    job = await asyncio.to_thread(add_job, database.session(), "infer", "m", "farm.model.m")
    await asyncio.to_thread(cancel_job, database.session(), job)
    change = await exchange.until(
        "change", lambda d: any((c["id"], c["status"]) == (job.id, "cancelled") for c in d)
    )
    exchange.leave.set()
    await asyncio.wait_for(task, BOUND_S)
    stop()
    database.remove()
    database.engine.dispose()
    refused = Exchange()
    await app(_scope(None), refused.receive, refused.send)
    wrong_method = Exchange()
    await app(_scope(admin_key, "POST"), wrong_method.receive, wrong_method.send)
    statuses = (refused.sent[0]["status"], wrong_method.sent[0]["status"])
    return {"hello": hello, "snapshot": snapshot, "change": change, "exchange": exchange,
            "statuses": statuses}  # fmt: skip


def test_the_stream_in_process_sends_snapshots_and_changes(
    farm_settings: Settings, admin_key: str
) -> None:
    seen = asyncio.run(_watch(farm_settings, admin_key))
    assert seen["hello"]["scopes"] == ["admin"]
    snapshot = seen["snapshot"]
    assert snapshot["ready"] is True and snapshot["workers"] == [] and snapshot["queues"] == {}
    assert set(snapshot["api"]) >= {"requests", "latency_le", "latency_counts"}
    assert [c["status"] for c in seen["change"] if c["type"] == "job"][-1] == "cancelled"
    start = seen["exchange"].sent[0]
    assert start["status"] == 200
    assert (b"content-type", b"text/event-stream; charset=utf-8") in start["headers"]
    assert seen["exchange"].sent[-1] == {"type": "http.response.body", "body": b"",
                                         "more_body": False}  # fmt: skip
    assert seen["statuses"] == (401, 405)
