"""The reply inbox of an API process, on a real Redis: replies, late jobs, garbage."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
import redis

from inference_farm.errors import DeadlineExceeded
from inference_farm.replies import POLL_S, REPLY_TTL_S, Inbox, send_reply
from tests.conftest import CLOSED_REDIS

WAIT_S = 10


class Outcome:
    """What one expected job was called back with."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: Any = None
        self.error: Any = None

    def __call__(self, reply: Any, error: Any) -> None:
        self.reply, self.error = reply, error
        self.done.set()


def test_a_reply_reaches_the_job_that_expects_it(broker_url: str) -> None:
    inbox, client = Inbox(broker_url), redis.Redis.from_url(broker_url)
    first, second = Outcome(), Outcome()
    inbox.expect("job-1", time.time() + 60, first)
    inbox.expect("job-2", time.time() + 60, second)
    client.rpush(inbox.key, b"not json")  # dropped with a warning; the reader goes on
    send_reply(client, inbox.key, "someone-else", {"ok": True})  # nobody waits: ignored
    send_reply(client, inbox.key, "job-2", {"ok": True, "n": 2})
    send_reply(client, inbox.key, "job-1", {"ok": True, "n": 1})
    assert first.done.wait(WAIT_S) and second.done.wait(WAIT_S)
    assert (first.reply, first.error) == ({"ok": True, "n": 1}, None)
    assert (second.reply, second.error) == ({"ok": True, "n": 2}, None)


def test_an_inbox_nobody_reads_expires(broker_url: str) -> None:
    client = redis.Redis.from_url(broker_url)
    send_reply(client, "farm:replies:gone", "job-1", {"ok": True})
    assert client.llen("farm:replies:gone") == 1
    assert 0 < client.ttl("farm:replies:gone") <= REPLY_TTL_S


def test_a_job_that_never_answers_is_given_up_after_its_deadline(broker_url: str) -> None:
    inbox = Inbox(broker_url)
    late = Outcome()
    inbox.expect("job-late", time.time(), late)
    assert late.done.wait(WAIT_S)
    assert late.reply is None and isinstance(late.error, DeadlineExceeded)
    assert late.error.extra == {"job_id": "job-late"}
    assert late.error.message.startswith("no answer within")


def test_a_forgotten_job_is_never_called_back(broker_url: str) -> None:
    inbox, client = Inbox(broker_url), redis.Redis.from_url(broker_url)
    forgotten, watched = Outcome(), Outcome()
    inbox.expect("job-gone", time.time() + 60, forgotten)
    inbox.forget("job-gone")
    inbox.expect("job-seen", time.time() + 60, watched)
    send_reply(client, inbox.key, "job-gone", {"ok": True})
    send_reply(client, inbox.key, "job-seen", {"ok": True})
    assert watched.done.wait(WAIT_S)
    assert not forgotten.done.is_set()


def test_a_broker_that_is_down_is_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    inbox = Inbox(CLOSED_REDIS)
    late = Outcome()
    with caplog.at_level(logging.INFO, logger="inference_farm.replies"):
        inbox.expect("job-1", time.time(), late)
        assert late.done.wait(WAIT_S)  # given up after its deadline, broker or not
        time.sleep(3 * POLL_S)  # several more failed reads
    warnings = [r for r in caplog.records if "could not read replies" in r.getMessage()]
    assert len(warnings) == 1
    assert isinstance(late.error, DeadlineExceeded)
