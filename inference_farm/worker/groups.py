"""Worker side of running requests: groups of stacked requests, decoded, run and split.

A coalesced job carries groups. Each group's inputs hold the rows of several requests one
after the other (`rows` says how many each); it is decoded once, run as one onnxruntime
call (the batcher may join it with other jobs' groups) and split back into one reply per
request. A request whose deadline passed is cut out before the run and answered 504.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from inference_farm.errors import FarmError, InvalidInput
from inference_farm.protocol.messages import Group, Reply, failure
from inference_farm.registry.cached import Served
from inference_farm.worker.state import WorkerState

log = logging.getLogger(__name__)
EXPIRED = "the job expired before a worker could run it"


def expired() -> Reply:
    """The reply of a request whose deadline passed before it ran."""
    return failure(EXPIRED, 504, expired=True)


@dataclass
class _Begun:
    """A decoded group: the batcher request of its live rows, or the reply every request gets."""

    size: int
    live: list[int]  # the requests that run, by index in the group
    rows: list[int]  # rows of each live request
    request: Any = None  # runtime.batcher.Request
    reply: Reply | None = None
    decode_s: float = 0.0


def run_groups(
    state: WorkerState,
    model: str,
    version: str,
    groups: list[Group],
    join_others: bool = True,
) -> list[Reply]:
    """One reply per request of every group, in order; never raises.

    join_others: the groups go through the version's batcher, so they may wait for, and
    share a run with, other jobs' requests; otherwise they run at once, in this thread,
    compatible groups of the job stacked (a coalesced job arrives stacked already).
    """
    sizes = [len(group.requests) for group in groups]
    try:
        found, session = state.serving(model, version)
    except FarmError as exc:
        return [failure(exc.message, exc.status)] * sum(sizes)
    except Exception as exc:
        log.exception("loading %s %s failed", model, version)
        return [failure(f"the model could not be loaded: {exc}", 500)] * sum(sizes)
    from inference_farm.runtime.batcher import run_each, run_together, stackable

    begun = [_begin(session, group, size) for group, size in zip(groups, sizes, strict=True)]
    requests = [b.request for b in begun if b.request is not None]
    batcher = state.batcher_for(found)
    stacked = [r for r in requests if batcher is not None and stackable(r)]
    if stacked and join_others:
        batcher.submit_all(stacked)
    elif stacked:
        run_together(stacked, batcher.max_rows)
    run_each([r for r in requests if not any(r is s for s in stacked)])
    return [reply for b in begun for reply in _finish(found, b)]


def _begin(session: Any, group: Group, size: int) -> _Begun:
    """The group decoded, its expired requests cut out; or the reply all of them get."""
    from inference_farm.runtime.batcher import Request

    metas = group.requests
    now = time.time()
    live = [i for i, meta in enumerate(metas) if not _past(meta.deadline, now)]
    begun = _Begun(size, live, [])
    if not live:
        return begun
    decoding = time.perf_counter()
    try:
        feeds, wanted = _decode(session, group)
        rows = _rows(group, feeds, size)
        feeds, begun.rows = _keep(feeds, rows, live)
        deadlines = [metas[i].deadline for i in live]
        deadline = None if None in deadlines else max(deadlines)
        begun.request = Request(session, feeds, wanted, deadline=deadline, count=len(live))
    except Exception as exc:
        begun.reply = failed_run(exc)
    begun.decode_s = time.perf_counter() - decoding
    return begun


def _past(deadline: Any, now: float) -> bool:
    return deadline is not None and now > deadline


def _decode(session: Any, group: Group) -> tuple[dict[str, Any], list[str]]:
    """The group's feeds for onnxruntime and the outputs it wants."""
    from inference_farm.protocol.packing import for_onnxruntime, unpack

    inputs = group.inputs
    feeds = {name: for_onnxruntime(unpack(packed), name) for name, packed in inputs.items()}
    names = [arg.name for arg in session.get_outputs()]
    wanted = group.outputs or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        raise InvalidInput(f"unknown output {unknown[0]!r}: the model has {', '.join(names)}")
    return feeds, list(wanted)


def _rows(group: Group, feeds: dict[str, Any], size: int) -> list[int]:
    """Rows of each request of the group; a group of one takes its inputs whole."""
    if size == 1:
        return [0]  # not split: see _keep
    rows = group.rows
    dims = {array.shape[0] if array.ndim else -1 for array in feeds.values()}
    if not isinstance(rows, list) or len(rows) != size or dims != {sum(rows)}:
        raise InvalidInput(f"the group's rows {rows!r} do not match its inputs (dim 0: {dims})")
    return rows


def _keep(feeds: dict[str, Any], rows: list[int], live: list[int]) -> tuple[dict, list[int]]:
    """feeds with only the live requests' rows, and those rows."""
    if len(live) == len(rows):
        return feeds, rows
    starts = np.concatenate([[0], np.cumsum(rows)])
    index = np.concatenate([np.arange(starts[i], starts[i + 1]) for i in live])
    return {name: array[index] for name, array in feeds.items()}, [rows[i] for i in live]


def _finish(found: Served, begun: _Begun) -> list[Reply]:
    """One reply per request of the group: its share of the outputs, or its error."""
    replies = [expired()] * begun.size
    if not begun.live:
        return replies
    for index, reply in zip(begun.live, _live_replies(found, begun), strict=True):
        replies[index] = reply
    return replies


def _live_replies(found: Served, begun: _Begun) -> list[Reply]:
    from inference_farm.protocol.packing import pack_outputs
    from inference_farm.runtime.batcher import split_rows

    if begun.reply is not None:
        return [begun.reply] * len(begun.live)
    try:
        outcome = begun.request.future.result()
        encoding = time.perf_counter()
        parts = [outcome.outputs]
        if len(begun.live) > 1:
            try:
                parts = split_rows(outcome.outputs, begun.rows)
            except ValueError:  # outputs that do not follow the batch dim: run each alone
                parts, outcome = _each_alone(begun)
        signature = found.signature.get("outputs", [])
        packed = [pack_outputs(dict(zip(outcome.wanted, p, strict=True)), signature) for p in parts]
    except Exception as exc:
        return [failed_run(exc, _where(found, begun.request.feeds))] * len(begun.live)
    encode_ms = (time.perf_counter() - encoding) * 1000 / len(parts)
    return [
        Reply(
            ok=True,
            model_version=found.version,
            outputs=outputs,
            decode_ms=begun.decode_s * 1000,
            compute_ms=outcome.compute_s * 1000,
            encode_ms=encode_ms,
            batch_size=outcome.batch_size,
        )
        for outputs in packed
    ]


def _each_alone(begun: _Begun) -> tuple[list[list[Any]], Any]:
    """Each live request of the group run by itself: its outputs, and the last outcome."""
    from inference_farm.runtime.batcher import Request, run_alone

    request, parts, start = begun.request, [], 0
    for rows in begun.rows:
        feeds = {name: array[start : start + rows] for name, array in request.feeds.items()}
        outcome = run_alone(Request(request.session, feeds, request.wanted))
        parts.append(outcome.outputs)
        start += rows
    return parts, outcome


def _where(found: Served, feeds: dict[str, Any]) -> str:
    """Which model version ran on which inputs, for an error message."""
    shapes = ", ".join(f"{name} {list(np.shape(array))}" for name, array in feeds.items())
    return f"model {found.name!r} version {found.version} could not run on inputs {shapes}"


def failed_run(exc: Exception, where: str = "the model could not run on these inputs") -> Reply:
    """The reply of a request whose inputs the model could not take (400: the inputs fit
    the signature, yet the model refused them, as a shape it cannot take at run time)."""
    from inference_farm.runtime.batcher import Expired
    from inference_farm.runtime.inspect import ort_message

    if isinstance(exc, FarmError):
        return failure(exc.message, exc.status)
    if isinstance(exc, Expired):
        return expired()
    return failure(f"{where}: {ort_message(exc)}", 400)
