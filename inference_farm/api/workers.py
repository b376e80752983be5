"""/v1/workers: the live workers, the queues they consume and the sessions they hold."""

from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint

from inference_farm.api import farm
from inference_farm.api.auth import scope
from inference_farm.errors import Unavailable

blp = Blueprint("workers", __name__, url_prefix="/v1/workers", description="Workers")
ASK_TIMEOUT_S = 1.0


def _ask(celery: Any) -> tuple[dict, dict]:
    """Each live worker's queues and cache report, asked within ASK_TIMEOUT_S."""
    try:
        queues = celery.control.inspect(timeout=ASK_TIMEOUT_S).active_queues() or {}
        replies = celery.control.broadcast("farm_cache", reply=True, timeout=ASK_TIMEOUT_S)
    except Exception as exc:
        raise Unavailable(f"could not reach the workers through the broker: {exc}") from None
    caches = {host: answer for reply in replies or [] for host, answer in reply.items()}
    return queues, caches


@blp.route("", methods=["GET"])
@scope("models:read")
def workers() -> Any:
    """Live workers: hostname, queues with their depth, device and loaded sessions"""
    context = farm()
    queues, caches = _ask(context.celery)
    listed = []
    for host in sorted(set(queues) | set(caches)):
        names = sorted(queue["name"] for queue in queues.get(host, []))
        cache = caches.get(host, {})
        listed.append({
            "hostname": host,
            "queues": [{"name": n, "depth": context.queues.depth(n)} for n in names],
            "device": cache.get("device"),
            "sessions": cache.get("entries", []),
            "cache": cache.get("stats", {}),
        })  # fmt: skip
    return {"workers": listed}
