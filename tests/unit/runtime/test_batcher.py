"""The batcher stacks compatible requests into one onnxruntime run and splits the answers."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper

from inference_farm.runtime.batcher import Batcher, Request, run_batch, split_rows, stackable
from tests import onnx_models

SLOW_START_S = 0.2  # the batcher waits this long for a full batch, so every request is queued


def session_of(model: object) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )


@pytest.fixture(scope="module")
def tiny() -> onnxruntime.InferenceSession:
    return session_of(onnx_models.tiny_mlp(features=4, outputs=3))


def free_dims() -> onnxruntime.InferenceSession:
    """x FP32 [N, M] -> Relu: two free dims, so requests of different widths can arrive."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "free_dims",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "M"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "M"])],
    )
    return session_of(onnx_models.model_of(graph))


def submit_all(batcher: Batcher, session: object, arrays: list[np.ndarray]) -> list:
    futures = [batcher.submit(Request(session, {"x": a}, ["y"])) for a in arrays]
    return [future.result(timeout=30) for future in futures]


def test_batched_results_equal_unbatched_ones(tiny: onnxruntime.InferenceSession) -> None:
    rng = np.random.default_rng(7)
    arrays = [rng.standard_normal((int(rng.integers(1, 4)), 4), np.float32) for _ in range(20)]
    outcomes = submit_all(Batcher("tiny", 64, SLOW_START_S), tiny, arrays)
    for array, outcome in zip(arrays, outcomes, strict=True):
        (alone,) = tiny.run(["y"], {"x": array})
        np.testing.assert_allclose(outcome.outputs[0], alone, rtol=1e-5, atol=1e-6)
    assert max(outcome.batch_size for outcome in outcomes) > 1


def test_a_batch_never_holds_more_rows_than_its_limit(tiny: onnxruntime.InferenceSession) -> None:
    arrays = [np.full((4, 4), i, np.float32) for i in range(10)]
    outcomes = submit_all(Batcher("tiny", 8, SLOW_START_S), tiny, arrays)
    assert {outcome.batch_size for outcome in outcomes} == {2}
    for array, outcome in zip(arrays, outcomes, strict=True):
        np.testing.assert_allclose(outcome.outputs[0], tiny.run(["y"], {"x": array})[0])


def test_a_request_larger_than_the_limit_runs_alone(tiny: onnxruntime.InferenceSession) -> None:
    big = np.ones((9, 4), np.float32)
    (outcome,) = submit_all(Batcher("tiny", 8, 0.0), tiny, [big])
    assert outcome.batch_size == 1 and outcome.outputs[0].shape == (9, 3)


def test_mixed_shapes_are_not_stacked() -> None:
    session = free_dims()
    rng = np.random.default_rng(3)
    arrays = [rng.standard_normal((1, 3 if i % 2 else 5), np.float32) for i in range(8)]
    outcomes = submit_all(Batcher("free", 32, SLOW_START_S), session, arrays)
    for array, outcome in zip(arrays, outcomes, strict=True):
        np.testing.assert_array_equal(outcome.outputs[0], np.maximum(array, 0))
        assert outcome.batch_size == 4  # the four of its own width, never the others


def test_other_datatypes_or_outputs_are_not_compatible(tiny: onnxruntime.InferenceSession) -> None:
    base = Request(tiny, {"x": np.zeros((1, 4), np.float32)}, ["y"])
    same = Request(tiny, {"x": np.ones((3, 4), np.float32)}, ["y"])
    wider = Request(tiny, {"x": np.zeros((1, 5), np.float32)}, ["y"])
    doubles = Request(tiny, {"x": np.zeros((1, 4), np.float64)}, ["y"])
    other_outputs = Request(tiny, {"x": np.zeros((1, 4), np.float32)}, [])
    assert base.compatible_key() == same.compatible_key()
    for other in (wider, doubles, other_outputs):
        assert base.compatible_key() != other.compatible_key()


def test_only_requests_with_one_row_count_are_stackable(tiny: onnxruntime.InferenceSession) -> None:
    assert stackable(Request(tiny, {"a": np.zeros((2, 1)), "b": np.zeros((2, 3))}, []))
    assert not stackable(Request(tiny, {"a": np.zeros((2, 1)), "b": np.zeros((3, 1))}, []))
    assert not stackable(Request(tiny, {"a": np.zeros((0, 4))}, []))
    assert not stackable(Request(tiny, {"a": np.float32(1.0)}, []))


def test_a_failed_run_fails_every_request_in_it() -> None:
    session = session_of(onnx_models.failing_run())  # needs 6 rows; two requests bring 2
    requests = [Request(session, {"x": np.zeros((1, 2), np.float32)}, ["y"]) for _ in range(2)]
    run_batch(requests)
    for request in requests:
        with pytest.raises(Exception, match=r"Gather|index|indices"):
            request.future.result(timeout=5)


def test_outputs_that_ignore_the_batch_are_run_alone() -> None:
    session = session_of(onnx_models.column_sum())
    arrays = [np.full((2, 2), i, np.float32) for i in range(1, 4)]
    requests = [Request(session, {"x": a}, ["y"]) for a in arrays]
    run_batch(requests)
    for array, request in zip(arrays, requests, strict=True):
        outcome = request.future.result(timeout=5)
        np.testing.assert_array_equal(outcome.outputs[0], array.sum(axis=0, keepdims=True))
        assert outcome.batch_size == 1


def test_split_rows_gives_each_request_its_rows() -> None:
    output = np.arange(12).reshape(6, 2)
    parts = split_rows([output], [1, 3, 2])
    assert [part[0].tolist() for part in parts] == [
        [[0, 1]],
        [[2, 3], [4, 5], [6, 7]],
        [[8, 9], [10, 11]],
    ]
    with pytest.raises(ValueError, match="batch dimension"):
        split_rows([np.zeros((5, 2))], [1, 3, 2])


def test_an_idle_batcher_runs_requests_in_the_calling_thread(
    tiny: onnxruntime.InferenceSession,
) -> None:
    arrays = [np.full((1, 4), i, np.float32) for i in range(3)]
    requests = [Request(tiny, {"x": a}, ["y"]) for a in arrays]
    batcher = Batcher("tiny", 32, 0.0)
    batcher.submit_all(requests)
    assert all(request.future.done() for request in requests)  # no other thread was needed
    assert batcher._thread is None  # the batcher never started its own thread
    for array, request in zip(arrays, requests, strict=True):
        outcome = request.future.result()
        assert outcome.batch_size == 3
        np.testing.assert_allclose(outcome.outputs[0], tiny.run(["y"], {"x": array})[0])


def test_requests_that_arrive_while_a_batch_runs_go_to_the_batcher_thread(
    tiny: onnxruntime.InferenceSession,
) -> None:
    batcher = Batcher("tiny", 32, 0.0)
    batcher._busy = True  # as if another thread were running a batch
    request = Request(tiny, {"x": np.ones((1, 4), np.float32)}, ["y"])
    batcher.submit_all([request])
    assert batcher._thread is not None and not request.future.done()  # it waits its turn
    batcher._busy = False
    with batcher._wake:
        batcher._wake.notify_all()
    assert request.future.result(timeout=10).outputs[0].shape == (1, 3)
