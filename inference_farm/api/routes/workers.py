"""/v1/workers: the live workers, the queues they consume and the sessions they hold."""

from __future__ import annotations

import datetime as dt
from typing import Any

import redis
from flask_smorest import Blueprint

from inference_farm.api.auth import scope
from inference_farm.api.context import farm
from inference_farm.broker import control, heartbeat
from inference_farm.broker.names import CACHE_COMMAND
from inference_farm.errors import Unavailable

blp = Blueprint("workers", __name__, url_prefix="/v1/workers", description="Workers")
ASK_TIMEOUT_S = 1.0


def _ask(celery: Any, expected: int | None) -> tuple[dict, dict]:
    """Each live worker's queues and cache report, asked within ASK_TIMEOUT_S; the wait
    ends early once the expected number of workers has answered."""
    try:
        queues = control.inspect(celery, "active_queues", ASK_TIMEOUT_S, expected)
        replies = control.call(
            celery, "broadcast", CACHE_COMMAND, reply=True, timeout=ASK_TIMEOUT_S, limit=expected
        )
    except Exception as exc:
        raise Unavailable(f"could not reach the workers through the broker: {exc}") from None
    caches = {host: answer for reply in replies or [] for host, answer in reply.items()}
    return queues, caches


def _heartbeats(client: redis.Redis) -> dict[str, dict]:
    try:
        return heartbeat.read_all(client)
    except redis.RedisError as exc:
        raise Unavailable(f"could not read the workers' heartbeats: {exc}") from None


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).isoformat(timespec="seconds")


def _describe(host: str, names: list[str], cache: dict, beat: dict) -> dict[str, Any]:
    sessions = cache.get("entries", [])
    port = beat.get("metrics_port")
    return {
        "hostname": host,
        "pid": beat.get("pid"),
        "queues": [{"name": n, "depth": farm().queues.depth(n)} for n in names],
        "device": cache.get("device") or beat.get("device"),
        "sessions": sessions,
        "loaded_bytes": sum(int(s.get("bytes", 0)) for s in sessions),
        "cache": cache.get("stats", {}),
        "last_heartbeat": _iso(beat.get("at")),
        "metrics_port": port,
    }


@blp.route("", methods=["GET"])
@scope("models:read")
def workers() -> Any:
    """Live workers: hostname, queues with their depth, device, loaded sessions, last heartbeat"""
    context = farm()
    beats = _heartbeats(context.queues.redis)
    queues, caches = _ask(context.celery, len(beats) or None)
    listed = []
    for host in sorted(set(queues) | set(caches) | set(beats)):
        # A worker busy with a long batch answers late; its heartbeat names its queues.
        asked = [queue["name"] for queue in queues.get(host, [])]
        names = sorted(asked or beats.get(host, {}).get("queues") or [])
        listed.append(_describe(host, names, caches.get(host, {}), beats.get(host, {})))
    return {"workers": listed}
