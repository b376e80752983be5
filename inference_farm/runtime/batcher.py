"""Dynamic batching: compatible requests for one session are stacked along dim 0 into one run."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
IDLE_EXIT_S = 30.0  # a lane's thread ends after this long without work, and restarts on demand


@dataclass(eq=False)
class Request:
    """One request's decoded inputs, the outputs it wants, and where its answer goes."""

    session: Any
    feeds: dict[str, np.ndarray]
    wanted: list[str]
    deadline: float | None = None  # epoch seconds; a request still waiting then is dropped
    count: int = 1  # the client requests whose rows these are (a stacked group carries many)
    future: Future = field(default_factory=Future)
    queued_at: float = field(default_factory=time.perf_counter)

    @property
    def rows(self) -> int:
        """Rows along dim 0 (every input of a stackable request has the same)."""
        return next(iter(self.feeds.values())).shape[0]

    def compatible_key(self) -> tuple:
        """Requests with equal keys may share one run: same session, inputs, datatypes,
        non-batch dims, and wanted outputs."""
        inputs = tuple(sorted((name, a.dtype.str, a.shape[1:]) for name, a in self.feeds.items()))
        return (id(self.session), inputs, tuple(self.wanted))


class Expired(Exception):
    """The request's deadline passed while it waited for a batch."""


@dataclass
class Outcome:
    """What one request gets back: its outputs, the client requests in its run, timings."""

    wanted: list[str]
    outputs: list[Any]
    batch_size: int
    compute_s: float
    queue_s: float


def stackable(request: Request) -> bool:
    """True when every input has the same, non-zero, number of rows."""
    rows = {array.shape[0] if array.ndim else -1 for array in request.feeds.values()}
    return len(rows) == 1 and min(rows) > 0


def run_alone(request: Request) -> Outcome:
    """Run one request by itself, in the calling thread."""
    started = time.perf_counter()
    outputs = request.session.run(request.wanted, request.feeds)
    compute = time.perf_counter() - started
    return Outcome(request.wanted, outputs, request.count, compute, started - request.queued_at)


class Batcher:
    """Stacks requests for one model version; one thread runs the batches, in arrival order."""

    def __init__(self, name: str, max_rows: int, max_delay_s: float) -> None:
        self.name, self.max_rows, self.max_delay_s = name, max_rows, max_delay_s
        self._pending: deque[Request] = deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._busy = False  # a batch is running: one at a time, whichever thread runs it

    def submit(self, request: Request) -> Future:
        """Queue request for the next compatible batch; the future gets its Outcome."""
        self.submit_all([request])
        return request.future

    def submit_all(self, requests: list[Request]) -> None:
        """Queue requests for batching; when nothing else is queued or running, run them in
        the calling thread, which saves a handoff to the batcher's thread."""
        with self._wake:
            self._pending.extend(requests)
            if self._busy or len(self._pending) > len(requests) or self.max_delay_s > 0:
                self._hand_over()
                return
            self._busy = True
        try:
            while not all(request.future.done() for request in requests):
                with self._wake:
                    batch = self._take()
                run_batch(batch)
        finally:
            with self._wake:
                self._busy = False
                if self._pending:
                    self._hand_over()

    def _hand_over(self) -> None:
        """Wake the batcher's thread, starting it if it ended; call under self._wake."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name=f"batcher-{self.name}", daemon=True
            )
            self._thread.start()
        self._wake.notify()

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                run_batch(batch)
            finally:
                with self._wake:
                    self._busy = False

    def _next_batch(self) -> list[Request] | None:
        """The oldest request and the compatible ones behind it, up to max_rows rows."""
        with self._wake:
            ready = self._wake.wait_for(lambda: self._pending and not self._busy, IDLE_EXIT_S)
            if not ready:
                self._thread = None
                return None
            if self.max_delay_s > 0:
                self._wake.wait_for(self._full, timeout=self.max_delay_s)
            self._busy = True
            return self._take()

    def _drop_expired(self) -> None:
        now = time.time()
        for request in [r for r in self._pending if r.deadline is not None and r.deadline < now]:
            self._pending.remove(request)
            request.future.set_exception(Expired("the request expired while waiting for a batch"))

    def _full(self) -> bool:
        return sum(request.rows for request in self._pending) >= self.max_rows

    def _take(self) -> list[Request]:
        self._drop_expired()
        if not self._pending:
            return []
        first = self._pending.popleft()
        batch, rows, key = [first], first.rows, first.compatible_key()
        kept: deque[Request] = deque()
        while self._pending:
            request = self._pending.popleft()
            if request.compatible_key() == key and rows + request.rows <= self.max_rows:
                batch.append(request)
                rows += request.rows
            else:
                kept.append(request)
        self._pending = kept
        return batch


def run_together(requests: list[Request], max_rows: int) -> None:
    """Run requests in the calling thread, compatible ones stacked up to max_rows rows."""
    pending = deque(requests)
    while pending:
        first = pending.popleft()
        batch, rows, key, kept = [first], first.rows, first.compatible_key(), deque()
        while pending:
            request = pending.popleft()
            if request.compatible_key() == key and rows + request.rows <= max_rows:
                batch.append(request)
                rows += request.rows
            else:
                kept.append(request)
        pending = kept
        run_batch(batch)


def run_each(requests: list[Request]) -> None:
    """Run each request by itself, in the calling thread, settling its future."""
    for request in requests:
        _settle(request, lambda request=request: run_alone(request))


def run_batch(batch: list[Request]) -> None:
    """Run a batch as one onnxruntime call and give each request its rows of every output."""
    if not batch:
        return
    if len(batch) == 1:
        _settle(batch[0], lambda: run_alone(batch[0]))
        return
    first = batch[0]
    counts = [request.rows for request in batch]
    started = time.perf_counter()
    try:
        feeds = {
            name: np.concatenate([request.feeds[name] for request in batch]) for name in first.feeds
        }
        outputs = first.session.run(first.wanted, feeds)
    except Exception as exc:  # one failed run: every request in it gets the error
        for request in batch:
            request.future.set_exception(exc)
        return
    try:
        parts = split_rows(outputs, counts)
    except ValueError:  # an output whose dim 0 is not the batch: the requests run alone
        run_each(batch)
        return
    compute = time.perf_counter() - started
    count = sum(request.count for request in batch)
    for request, outputs_of in zip(batch, parts, strict=True):
        outcome = Outcome(request.wanted, outputs_of, count, compute, started - request.queued_at)
        request.future.set_result(outcome)


def split_rows(outputs: list[Any], counts: list[int]) -> list[list[Any]]:
    """Each request's rows of every output; ValueError if an output is not batched."""
    total = sum(counts)
    for output in outputs:
        if not isinstance(output, np.ndarray) or output.ndim == 0 or output.shape[0] != total:
            raise ValueError("the model's outputs do not follow its inputs' batch dimension")
    offsets = np.cumsum(counts)[:-1]
    per_output = [np.split(output, offsets) for output in outputs]
    return [list(rows) for rows in zip(*per_output, strict=True)]


def _settle(request: Request, work: Callable[[], Outcome]) -> None:
    try:
        request.future.set_result(work())
    except Exception as exc:
        request.future.set_exception(exc)
