"""Worker heartbeats on a real Redis: who is alive, and how many answers a broadcast awaits."""

from __future__ import annotations

import json
import time

import redis

from inference_farm.broker import heartbeat
from tests.conftest import CLOSED_REDIS


def test_heartbeats_are_read_back_and_counted(broker_url: str) -> None:
    client = redis.Redis.from_url(broker_url)
    assert heartbeat.read_all(client) == {}
    assert heartbeat.expected_replies(client) is None  # nobody to count: wait the full time
    heartbeat.beat(client, "farm-1@a", {"pid": 1, "device": "cpu"})
    heartbeat.beat(client, "farm-2@b", {"pid": 2, "device": "cuda:0"})
    beats = heartbeat.read_all(client)
    assert sorted(beats) == ["farm-1@a", "farm-2@b"]
    assert beats["farm-2@b"]["device"] == "cuda:0"
    assert 0 < client.ttl(heartbeat.KEY.format("farm-1@a")) <= heartbeat.TTL_S
    assert heartbeat.expected_replies(client) == 2
    heartbeat.stop(client, "farm-1@a")
    assert heartbeat.expected_replies(client) == 1


def test_an_unreachable_broker_expects_no_count() -> None:
    client = redis.Redis.from_url(CLOSED_REDIS, socket_connect_timeout=1)
    assert heartbeat.expected_replies(client) is None


def test_only_recent_beats_vouch_for_the_queues_they_name(broker_url: str) -> None:
    client = redis.Redis.from_url(broker_url)
    heartbeat.beat(client, "farm-1@a", {"queues": ["farm.control", "farm.model.a"]})
    stale = {"hostname": "farm-2@b", "queues": ["farm.model.b"], "at": time.time() - 60}
    client.set(heartbeat.KEY.format("farm-2@b"), json.dumps(stale), ex=heartbeat.TTL_S)
    beats = heartbeat.read_all(client)
    assert sorted(beats) == ["farm-1@a", "farm-2@b"]  # both still listed as alive
    assert heartbeat.served_queues(beats) == {"farm.control", "farm.model.a"}
