"""The API's coalescer on a real Redis: what it publishes, and when."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import msgpack
import numpy as np
import redis

from inference_farm.api import enqueue
from inference_farm.api.coalescer import Coalescer
from inference_farm.broker.app import create_celery
from inference_farm.broker.names import model_queue
from inference_farm.broker.queues import QueueWatch
from inference_farm.errors import DeadlineExceeded
from inference_farm.protocol.codec import parse_request
from inference_farm.protocol.packing import unpack
from inference_farm.settings import Settings
from tests.integration.helpers import beat_for

QUEUE = model_queue("m")
PRIORITY = 9  # sync requests run at 9: kombu priority 0, the bare queue name


def prepared(value: float, max_rows: int = 32, delay_s: float = 0.0) -> enqueue.Prepared:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [value, 0]}]}
    parsed = parse_request(json.dumps(body).encode(), None)
    return enqueue.Prepared("m", "1.0.0", parsed, None, "", 1, max_rows, delay_s)


def coalescer_for(settings: Settings) -> Coalescer:
    celery = create_celery(settings)
    # No worker runs, so nothing consumes what is published; a heartbeat (what workers
    # write) names the queue, and the watch asks the absent workers only briefly.
    beat_for(settings.broker_url or "", QUEUE)
    watch = QueueWatch(celery, settings.broker_url or "", timeout=0.2)
    assert watch.serves(QUEUE)
    return Coalescer(celery, watch, max_inflight=1, max_queue_length=100)


def published(settings: Settings) -> list[dict]:
    client = redis.Redis.from_url(settings.broker_url)
    messages = [json.loads(raw) for raw in client.lrange(QUEUE, 0, -1)]
    assert {m["content-type"] for m in messages} <= {"application/x-msgpack"}
    return [msgpack.unpackb(base64.b64decode(m["body"]))[0][0] for m in reversed(messages)]


def run_requests(coalescer: Coalescer, requests: list[enqueue.Prepared], gap_s: float) -> list:
    async def scenario() -> list:
        tasks = []
        for index, request in enumerate(requests):
            trace = {"request_id": str(index), "enqueued_at": time.time()}
            coro = coalescer.infer(request, time.time() + 0.8, PRIORITY, trace)
            tasks.append(asyncio.create_task(coro))
            await asyncio.sleep(gap_s)
        return await asyncio.gather(*tasks, return_exceptions=True)

    return asyncio.run(scenario())


def test_requests_within_a_models_queue_delay_travel_as_one_job(
    farm_settings: Settings, broker_url: str
) -> None:
    coalescer = coalescer_for(farm_settings)
    outcomes = run_requests(coalescer, [prepared(i, delay_s=0.3) for i in range(5)], 0.02)
    assert all(isinstance(outcome, DeadlineExceeded) for outcome in outcomes), outcomes
    [job] = published(farm_settings)
    [group] = job["groups"]
    assert group["rows"] == [1] * 5
    np.testing.assert_array_equal(unpack(group["inputs"]["x"])[:, 0], np.arange(5))
    assert [meta["request_id"] for meta in group["requests"]] == ["0", "1", "2", "3", "4"]


async def until_published(settings: Settings, jobs: int, timeout: float = 3.0) -> bool:
    """Whether the model's queue holds `jobs` jobs within timeout (well under a 5 s delay)."""
    client = redis.Redis.from_url(settings.broker_url)
    deadline = time.monotonic() + timeout
    while client.llen(QUEUE) < jobs and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    return client.llen(QUEUE) >= jobs


def test_without_a_delay_the_first_request_goes_at_once_and_a_full_job_goes_early(
    farm_settings: Settings, broker_url: str
) -> None:
    coalescer = coalescer_for(farm_settings)
    coalescer.max_inflight = 2

    async def scenario() -> tuple[bool, bool, list]:
        def send(value: float, delay_s: float) -> asyncio.Task:
            trace = {"request_id": str(value), "enqueued_at": time.time()}
            request = prepared(value, max_rows=2, delay_s=delay_s)
            return asyncio.create_task(coalescer.infer(request, time.time() + 0.8, PRIORITY, trace))

        # No delay: the first goes alone, at once; two rows fill the second job, which goes
        # without waiting out its 5 s delay.
        tasks = [send(0, 0)]
        alone = await until_published(farm_settings, 1)
        tasks += [send(1, 5), send(2, 5)]
        full = await until_published(farm_settings, 2)
        return alone, full, await asyncio.gather(*tasks, return_exceptions=True)

    alone, full, outcomes = asyncio.run(scenario())
    assert (alone, full) == (True, True)
    assert all(isinstance(outcome, DeadlineExceeded) for outcome in outcomes), outcomes
    jobs = published(farm_settings)
    assert [job["groups"][0]["rows"] for job in jobs] == [[1], [1, 1]]
    assert [[m["request_id"] for m in job["groups"][0]["requests"]] for job in jobs] == [
        ["0"],
        ["1", "2"],
    ]
