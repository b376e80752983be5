"""The reply inbox of an API process, on a real Redis: replies, late jobs, garbage."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest
import redis

from inference_farm.broker.replies import REPLY_TTL_S, Inbox, send_reply
from inference_farm.errors import DeadlineExceeded
from inference_farm.protocol.messages import BatchReply, Reply
from tests.conftest import CLOSED_REDIS

WAIT_S = 10


def numbered(n: int) -> BatchReply:
    """A reply that says which job it answers."""
    return BatchReply(ok=True, replies=[Reply(ok=True, batch_size=n)])


class Outcome:
    """What one expected job was called back with."""

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.calls = 0
        self.reply: Any = None
        self.error: Any = None

    def __call__(self, reply: Any, error: Any) -> None:
        self.reply, self.error = reply, error
        self.calls += 1
        self.done.set()

    async def wait(self) -> bool:
        try:
            await asyncio.wait_for(self.done.wait(), WAIT_S)
        except TimeoutError:
            return False
        return True


def test_a_reply_reaches_the_job_that_expects_it(broker_url: str) -> None:
    async def scenario() -> None:
        inbox, client = Inbox(broker_url), redis.Redis.from_url(broker_url)
        first, second = Outcome(), Outcome()
        inbox.expect("job-1", time.time() + 60, first)
        inbox.expect("job-2", time.time() + 60, second)
        client.rpush(inbox.key, b"not json")  # dropped with a warning; the reader goes on
        send_reply(client, inbox.key, "someone-else", BatchReply(ok=True))  # nobody waits: ignored
        send_reply(client, inbox.key, "job-2", numbered(2))
        send_reply(client, inbox.key, "job-1", numbered(1))
        assert await first.wait() and await second.wait()
        assert (first.reply, first.error) == (numbered(1), None)
        assert (second.reply, second.error) == (numbered(2), None)
        assert first.calls == second.calls == 1

    asyncio.run(scenario())


def test_many_replies_that_arrive_together_each_reach_their_job(broker_url: str) -> None:
    async def scenario() -> None:
        inbox, client = Inbox(broker_url), redis.Redis.from_url(broker_url)
        outcomes = {f"job-{i}": Outcome() for i in range(150)}  # more than one read takes
        for task_id, outcome in outcomes.items():
            inbox.expect(task_id, time.time() + 60, outcome)
        # The reader first runs at the next await: every reply is waiting by then.
        for index, task_id in enumerate(outcomes):
            send_reply(client, inbox.key, task_id, numbered(index))
        for index, outcome in enumerate(outcomes.values()):
            assert await outcome.wait()
            assert outcome.reply == numbered(index)

    asyncio.run(scenario())


def test_an_inbox_nobody_reads_expires(broker_url: str) -> None:
    client = redis.Redis.from_url(broker_url)
    send_reply(client, "farm:replies:gone", "job-1", BatchReply(ok=True))
    assert client.llen("farm:replies:gone") == 1
    assert 0 < client.ttl("farm:replies:gone") <= REPLY_TTL_S


def test_a_job_that_never_answers_is_given_up_after_its_deadline(broker_url: str) -> None:
    async def scenario() -> None:
        inbox = Inbox(broker_url)
        late = Outcome()
        inbox.expect("job-late", time.time(), late)
        assert await late.wait()
        assert late.reply is None and isinstance(late.error, DeadlineExceeded)
        assert late.error.extra == {"job_id": "job-late"}
        assert late.error.message.startswith("no answer within")

    asyncio.run(scenario())


def test_a_forgotten_job_is_never_called_back(broker_url: str) -> None:
    async def scenario() -> None:
        inbox, client = Inbox(broker_url), redis.Redis.from_url(broker_url)
        forgotten, watched = Outcome(), Outcome()
        inbox.expect("job-gone", time.time() + 60, forgotten)
        inbox.forget("job-gone")
        inbox.expect("job-seen", time.time() + 60, watched)
        send_reply(client, inbox.key, "job-gone", BatchReply(ok=True))
        send_reply(client, inbox.key, "job-seen", BatchReply(ok=True))
        assert await watched.wait()
        assert not forgotten.done.is_set()

    asyncio.run(scenario())


def test_a_broker_that_is_down_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        inbox = Inbox(CLOSED_REDIS)
        for name in ("job-1", "job-2"):
            # Given up after its deadline, broker or not. The second, expected once the first
            # was given up, waits out GRACE_S: more failed reads, each POLL_S apart.
            late = Outcome()
            inbox.expect(name, time.time(), late)
            assert await late.wait(), name
            assert isinstance(late.error, DeadlineExceeded)

    with caplog.at_level(logging.INFO, logger="inference_farm.broker.replies"):
        asyncio.run(scenario())
    warnings = [r for r in caplog.records if "could not read replies" in r.getMessage()]
    assert len(warnings) == 1


def test_the_reader_ends_with_its_event_loop(broker_url: str) -> None:
    readers: list[asyncio.Task] = []

    async def scenario() -> None:
        inbox = Inbox(broker_url)
        seen = Outcome()
        inbox.expect("job-1", time.time() + 60, seen)
        send_reply(redis.Redis.from_url(broker_url), inbox.key, "job-1", BatchReply(ok=True))
        assert await seen.wait()
        readers.extend(task for task in asyncio.all_tasks() if task.get_name() == "inbox")

    # asyncio.run cancels the reader and waits for it: one that read on would never return.
    loop = threading.Thread(target=asyncio.run, args=(scenario(),), daemon=True)
    loop.start()
    loop.join(timeout=WAIT_S)
    assert not loop.is_alive(), "the reader outlived its event loop"
    assert len(readers) == 1 and readers[0].done()
