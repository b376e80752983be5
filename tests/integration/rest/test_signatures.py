"""Models of many shapes, uploaded and validated by a real worker: the stored signatures."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import onnx
import pytest
from flask.testing import FlaskClient

from tests import onnx_models, real_shapes
from tests.integration.helpers import model_bytes, settled, upload

ZOO = {
    "multi-io": onnx_models.multi_io,
    "fp16": onnx_models.fp16_model,
    "bool": onnx_models.bool_model,
    "int64-scalar": onnx_models.int64_scalar,
    "fixed": onnx_models.fixed_no_batch,
    "sequence-out": onnx_models.sequence_output,
}


def _triples(entries: list[dict]) -> list[tuple]:
    return [(e["name"], e["datatype"], e["shape"]) for e in entries]


def test_every_model_of_the_zoo_gets_its_signature(
    api: FlaskClient, worker: subprocess.Popen
) -> None:
    for name, build in ZOO.items():
        assert upload(api, name, model_bytes(build())).status_code == 202
    records = {name: settled(api, name, "1.0.0") for name in ZOO}
    for name, record in records.items():
        assert record["status"] == "ready", (name, record["error"])

    assert _triples(records["multi-io"]["signature"]["inputs"]) == [
        ("a", "FP32", [-1, 3]),
        ("b", "INT64", [-1, 3]),
    ]
    assert {e["datatype"] for e in records["multi-io"]["signature"]["outputs"]} == {"FP32", "INT64"}
    assert records["multi-io"]["batchable"] is True
    assert {e["datatype"] for e in records["fp16"]["signature"]["inputs"]} == {"FP16"}
    assert {e["datatype"] for e in records["fp16"]["signature"]["outputs"]} == {"FP16"}
    assert {e["datatype"] for e in records["bool"]["signature"]["inputs"]} == {"BOOL"}
    scalar = [e for e in records["int64-scalar"]["signature"]["inputs"] if e["datatype"] == "INT64"]
    assert [e["shape"] for e in scalar] == [[]]
    assert records["int64-scalar"]["batchable"] is False
    assert _triples(records["fixed"]["signature"]["inputs"]) == [("x", "FP32", [3, 4])]
    assert records["fixed"]["batchable"] is False
    outputs = records["sequence-out"]["signature"]["outputs"]
    assert [(e["name"], e["kind"], e["datatype"]) for e in outputs] == [
        ("label", "tensor", "INT64"),
        ("probs", "sequence", "BYTES"),
    ]
    assert all(e["kind"] == "tensor" for e in records["fixed"]["signature"]["outputs"])


@pytest.mark.parametrize(
    "build, reason",
    [
        (onnx_models.unknown_op, "Frobnicate"),
        (real_shapes.fixed_shape_broken, "its own declared input shapes failed"),
        (onnx_models.sequence_input, "only tensor inputs are supported"),
    ],
    ids=["unknown-op", "fixed-shape-broken", "sequence-input"],
)
def test_models_onnxruntime_cannot_serve_end_failed(
    api: FlaskClient, worker: subprocess.Popen, build: Callable[[], onnx.ModelProto], reason: str
) -> None:
    assert upload(api, "nope", model_bytes(build())).status_code == 202
    record = settled(api, "nope", "1.0.0")
    assert record["status"] == "failed"
    assert reason in record["error"]


def test_external_data_is_refused_and_never_read(
    api: FlaskClient, worker: subprocess.Popen, tmp_path: Path
) -> None:
    path = onnx_models.external_data(tmp_path)
    assert upload(api, "external", path.read_bytes()).status_code == 202
    record = settled(api, "external", "1.0.0")
    assert record["status"] == "failed"
    assert "external data" in record["error"]
