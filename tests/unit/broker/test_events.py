"""Registry events on pub/sub: one channel per Redis database, and bad messages ignored."""

from __future__ import annotations

import redis

from inference_farm.broker import events


def test_each_database_number_has_its_own_channel() -> None:
    first = redis.Redis.from_url("redis://127.0.0.1:1/3")
    second = redis.Redis.from_url("redis://127.0.0.1:1/4")
    assert events.channel(first) == "farm:events:3"
    assert events.channel(first) != events.channel(second)


def test_a_message_that_is_no_list_of_changes_is_dropped() -> None:
    assert events._decode(b"not json") == []
    assert events._decode(b'{"type": "job"}') == []
    assert events._decode(b'[{"type": "job"}, 3]') == [{"type": "job"}]


def test_publishing_without_a_broker_never_raises() -> None:
    publish = events.publisher(redis.Redis.from_url("redis://127.0.0.1:1/0"))
    publish([{"type": "job"}])
    publish([{"type": "job"}])  # logged once per outage, never raised
