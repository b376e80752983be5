"""Stacking in the API and splitting in the worker: a coalesced job's groups, end to end.

The API side (coalescer.stack) is fed parsed requests; the worker side (runner.run_groups)
runs the groups it builds on a real onnxruntime session and must answer each request as
if it had run alone.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime
import pytest

from inference_farm.api import enqueue
from inference_farm.api.coalescer import _Waiter, stack
from inference_farm.protocol.codec import parse_request
from inference_farm.protocol.messages import Group, decode, encode
from inference_farm.protocol.packing import pack, unpack
from inference_farm.registry.cached import Served
from inference_farm.runtime.batcher import Batcher
from inference_farm.worker.groups import run_groups
from inference_farm.worker.thread_pool import TaskPool
from tests import onnx_models

FEATURES, OUTPUTS = 4, 3


def served(batchable: bool = True, outputs: list[str] | None = None) -> Served:
    names = outputs or ["y"]
    return Served(
        name="m", version="1.0.0", status="ready", error=None, sha256=None,
        signature={"inputs": [], "outputs": [{"name": n, "kind": "tensor"} for n in names]},
        batchable=batchable, max_batch_size=None, max_queue_delay_ms=None,
    )  # fmt: skip


def request_of(array: np.ndarray, outputs: list[str] | None = None) -> Any:
    document: dict[str, Any] = {
        "inputs": [
            {
                "name": "x",
                "datatype": "FP32",
                "shape": list(array.shape),
                "data": array.ravel().tolist(),
            }
        ]
    }
    if outputs:
        document["outputs"] = [{"name": name} for name in outputs]
    return parse_request(json.dumps(document).encode(), None)


def waiter(array: np.ndarray, max_rows: int = 32, outputs: list[str] | None = None) -> _Waiter:
    parsed = request_of(array, outputs)
    rows = array.shape[0] if array.ndim else 1
    prepared = enqueue.Prepared("m", "1.0.0", parsed, outputs, "", rows, max_rows)
    trace = {"request_id": f"r{id(parsed)}", "enqueued_at": time.time()}
    return _Waiter(prepared, time.time() + 60, trace, asyncio.Future(loop=_LOOP))


_LOOP = asyncio.new_event_loop()


def rows(count: int, width: int = FEATURES, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, width)).astype(np.float32)


def test_compatible_requests_travel_as_one_tensor() -> None:
    parts = [rows(1, seed=1), rows(3, seed=2), rows(2, seed=3)]
    typed, order = stack([waiter(p) for p in parts])
    groups = [encode(group) for group in typed]
    assert len(groups) == 1
    [group] = groups
    assert group["rows"] == [1, 3, 2]
    np.testing.assert_array_equal(unpack(group["inputs"]["x"]), np.concatenate(parts))
    assert [m["request_id"] for m in group["requests"]] == [w.trace["request_id"] for w in order]


def test_requests_that_cannot_share_a_run_get_groups_of_their_own() -> None:
    wide, narrow, picky, alone = (
        waiter(rows(1, width=5)),
        waiter(rows(2)),
        waiter(rows(1), outputs=["y"]),
        waiter(rows(2), max_rows=1),  # a model that cannot stack
    )
    also_narrow = waiter(rows(1))
    typed, order = stack([wide, narrow, picky, alone, also_narrow])
    groups = [encode(group) for group in typed]
    assert [g["rows"] for g in groups] == [[1], [2, 1], [1], [2]]
    # Replies come back group by group: the waiters are reordered to match.
    assert order == [wide, narrow, also_narrow, picky, alone]


class _State:
    """What run_groups needs of a worker: a session for the version, and its batcher."""

    def __init__(self, session: Any, found: Served) -> None:
        self.session, self.found = session, found
        self.batcher = Batcher("m", 32, 0.0) if found.batchable else None

    def serving(self, _model: str, _version: str) -> tuple[Served, Any]:
        return self.found, self.session

    def batcher_for(self, _found: Served) -> Batcher | None:
        return self.batcher


@pytest.fixture(scope="module")
def tiny() -> onnxruntime.InferenceSession:
    model = onnx_models.tiny_mlp(features=FEATURES, outputs=OUTPUTS, seed=3)
    return onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )


def _run(state: object, model: str, version: str, groups: list[dict], join: bool) -> list:
    """run_groups on groups in their plain form; the replies in theirs."""
    typed = [decode(Group, group) for group in groups]
    return [encode(reply) for reply in run_groups(state, model, version, typed, join)]


def group_of(parts: list[np.ndarray], deadlines: list[float | None] | None = None) -> dict:
    deadlines = deadlines or [None] * len(parts)
    return {
        "inputs": {"x": pack(np.concatenate(parts), "FP32")},
        "outputs": None,
        "rows": [len(p) for p in parts],
        "requests": [{"deadline": d, "request_id": str(i)} for i, d in enumerate(deadlines)],
    }


def output(reply: dict) -> np.ndarray:
    assert reply["ok"], reply
    return unpack(reply["outputs"]["y"])


def test_stacked_answers_equal_unstacked_ones(tiny: onnxruntime.InferenceSession) -> None:
    parts = [rows(n, seed=n) for n in (1, 4, 2, 1)]
    replies = _run(_State(tiny, served()), "m", "1.0.0", [group_of(parts)], False)
    assert len(replies) == len(parts)
    for part, reply in zip(parts, replies, strict=True):
        np.testing.assert_allclose(output(reply), tiny.run(None, {"x": part})[0], rtol=1e-5)
        assert reply["batch_size"] == len(parts)


def test_an_expired_request_is_cut_out_before_the_run(tiny: onnxruntime.InferenceSession) -> None:
    parts = [rows(2, seed=1), rows(1, seed=2), rows(3, seed=3)]
    group = group_of(parts, [None, time.time() - 1, time.time() + 60])
    first, late, last = _run(_State(tiny, served()), "m", "1.0.0", [group], False)
    assert (late["ok"], late["status"], late.get("expired")) == (False, 504, True)
    for part, reply in ((parts[0], first), (parts[2], last)):
        np.testing.assert_allclose(output(reply), tiny.run(None, {"x": part})[0], rtol=1e-5)
        assert reply["batch_size"] == 2  # the run held only the two live requests


def test_a_broken_group_fails_alone(tiny: onnxruntime.InferenceSession) -> None:
    good = group_of([rows(1), rows(2)])
    miscounted = {**group_of([rows(1), rows(2)]), "rows": [1, 1]}
    garbled = {**group_of([rows(1)]), "inputs": {"x": {"b64": "?"}}}
    unknown = {**group_of([rows(1)]), "outputs": ["nope"]}
    groups = [miscounted, good, garbled, unknown]
    replies = _run(_State(tiny, served()), "m", "1.0.0", groups, False)
    assert len(replies) == 2 + 2 + 1 + 1
    for reply in replies[:2]:
        assert (reply["ok"], reply["status"]) == (False, 400) and "rows" in reply["error"]
    assert all(reply["ok"] for reply in replies[2:4])
    assert (replies[4]["ok"], replies[4]["status"]) == (False, 400)
    assert replies[5]["status"] == 400 and "nope" in replies[5]["error"]


def test_outputs_that_ignore_the_batch_dim_are_run_request_by_request() -> None:
    """Stacked, one request's column sums would be everyone's."""
    model = onnx_models.column_sum().SerializeToString()
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
    parts = [rows(2, width=2, seed=1), rows(3, width=2, seed=2)]
    replies = _run(_State(session, served()), "m", "1.0.0", [group_of(parts)], False)
    for part, reply in zip(parts, replies, strict=True):
        np.testing.assert_allclose(output(reply), part.sum(axis=0, keepdims=True), rtol=1e-5)


@dataclass
class _Calls:
    threads: list[str]

    def target(self, *_args: Any) -> str:
        self.threads.append(threading.current_thread().name)
        return "done"


def test_the_pool_runs_coalesced_jobs_inline_and_the_rest_on_its_threads() -> None:
    pool = TaskPool(limit=1)
    calls, results = _Calls([]), []
    pool.on_apply(calls.target, ("farm.infer_batch", "id"), callback=results.append)
    pool.on_apply(calls.target, ("farm.validate", "id"), callback=results.append).wait(10)
    pool.on_stop()
    assert calls.threads[0] == threading.current_thread().name
    assert calls.threads[1] != threading.current_thread().name
    assert results == ["done", "done"]
