"""The one data plane of sync inference: authorize, check, send (coalesced or not), wait.

Every transport parses its own request into an InferRequest, calls DataPlane.infer once,
and renders the worker's reply in its own format: the REST lane (api/asgi.py) and the gRPC
servicer alike. Registry reads on a cache miss, rate limits and uncoalesced waits block,
so they run on the plane's threads, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from inference_farm.api import enqueue
from inference_farm.api.auth import bearer, key_for, quick_key
from inference_farm.api.context import Farm
from inference_farm.errors import InvalidInput
from inference_farm.protocol.messages import Reply
from inference_farm.protocol.request import InferRequest
from inference_farm.telemetry.request_ids import trace_fields

log = logging.getLogger(__name__)
MICROSECONDS = 1e6
MAX_TIMEOUT_S = 86400.0  # a synchronous request waits at most a day


def deadline_of(parsed: InferRequest, default_timeout: float) -> float:
    """Epoch seconds the answer is due by: parameters.timeout (µs, as in Triton) or the default."""
    timeout = parsed.parameters.get("timeout")
    if timeout is None:
        return time.time() + default_timeout
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not 0 < timeout <= MAX_TIMEOUT_S * MICROSECONDS
    ):
        raise InvalidInput(
            f"parameters.timeout must be a positive number of microseconds, at most "
            f"{MAX_TIMEOUT_S * MICROSECONDS:.0f} (a day), got {timeout!r}"
        )
    return time.time() + timeout / MICROSECONDS


def priority_of(parsed: InferRequest) -> int:
    """parameters.priority, 0-9 (9, the default, most urgent)."""
    return enqueue.check_priority(parsed.parameters.get("priority", enqueue.MAX_PRIORITY))


class DataPlane:
    """Sync inference for one API process, on its event loop and its threads."""

    def __init__(self, context: Farm) -> None:
        self.farm = context
        self.settings = context.settings
        self.threads = ThreadPoolExecutor(context.settings.api_threads, "data-plane")

    async def authorize(self, authorization: str, name: str, where: str) -> None:
        """401, 403 or 429 unless the Authorization header's key may infer with model name."""
        context = self.farm
        if quick_key(context, authorization, "infer", name) is None:
            await self.blocking(key_for, context, authorization, "infer", name, where)
        elif context.registry.key_refresh_due(bearer(authorization)):
            self.in_background(context.registry.refresh_key, bearer(authorization))

    async def infer(self, name: str, version: str | None, parsed: InferRequest) -> Reply:
        """The worker's reply to parsed for model name (and version); a FarmError otherwise."""
        context, settings = self.farm, self.settings
        deadline = deadline_of(parsed, settings.request_timeout)
        found = context.registry.cached_served(name, version)
        if found is not None:
            prepared = enqueue.check(found, name, parsed, settings)
            if context.registry.versions.claim_refresh((name, version)):
                self.in_background(context.registry.refresh_served, name, version)
        else:
            prepared = await self.blocking(self._prepare, name, version, parsed)
        priority = priority_of(parsed)
        if settings.coalesce_requests:
            return await context.coalescer.infer(prepared, deadline, priority, trace_fields())
        return await self.blocking(self._uncoalesced, prepared, deadline, priority)

    def _prepare(self, name: str, version: str | None, parsed: InferRequest) -> enqueue.Prepared:
        context = self.farm
        return enqueue.prepare(
            context.db.session(), name, version, parsed, context.registry, context.settings
        )

    def _uncoalesced(self, prepared: enqueue.Prepared, deadline: float, priority: int) -> Reply:
        """The reply to a request sent as a job of its own, through the result backend."""
        context = self.farm
        task_id = enqueue.submit(
            context.celery, context.queues, prepared, deadline, context.settings.max_queue_length,
            priority=priority,
        )  # fmt: skip
        return enqueue.wait(context.celery, task_id, deadline)

    async def blocking(self, work: Callable[..., Any], *args: Any) -> Any:
        """work(*args) on the plane's threads, with this request's context (its request id)."""
        call = functools.partial(contextvars.copy_context().run, self._released, work, *args)
        return await asyncio.get_running_loop().run_in_executor(self.threads, call)

    def in_background(self, refresh: Callable[..., Any], *args: Any) -> None:
        """refresh(session, *args) on the plane's threads, unawaited: a cached registry entry
        past half its life is read afresh before it expires, off every request's path."""

        def run() -> None:
            try:
                refresh(self.farm.db.session(), *args)
            except Exception as exc:  # the entry is dropped; the next request reads it
                log.info("refreshing a cached registry entry failed: %s", exc)
            finally:
                self.farm.db.remove()

        self.threads.submit(run)

    def _released(self, work: Callable[..., Any], *args: Any) -> Any:
        try:
            return work(*args)
        finally:
            self.farm.db.remove()  # no connection held while waiting for the worker
