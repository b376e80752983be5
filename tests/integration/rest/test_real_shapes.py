"""Models with real-world shapes, validated by a real worker and served through a real API
to tritonclient.http: each answers as in-process onnxruntime does."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tritonclient.http as triton
from onnx import helper
from tritonclient.utils import InferenceServerException

from tests import onnx_models, real_shapes
from tests.integration.helpers import post_version, settled_http, triton_infer

SERVED = [
    "reflect_pad_audio",
    "stride32_detector",
    "symbolic_expression_dims",
    "vad_like_recurrent",
    "punctuated_names",
    "optional_initializer_input",
    "sequence_and_map_outputs",
]


def name_of(builder: str) -> str:
    return builder.replace("_", "-")


def reference(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, Any]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds), strict=True))


def jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {str(key): float(item) for key, item in value.items()}
    return value


def assert_same(result: Any, expected: dict[str, Any]) -> None:
    for name, want in expected.items():
        got = result.as_numpy(name)
        output = result.get_output(name)
        if output.get("parameters", {}).get("content_type") == "application/json":
            assert [json.loads(text) for text in got] == jsonable(want), name
        else:
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)


def test_models_with_real_world_shapes_are_ready_and_serve(
    api_url: str, admin_key: str, triton_client: triton.InferenceServerClient,
    worker: subprocess.Popen,
) -> None:  # fmt: skip
    for builder in SERVED:
        content = real_shapes.BUILDERS[builder]().SerializeToString()
        assert post_version(api_url, admin_key, name_of(builder), content).status_code == 202
    for builder in SERVED:
        record = settled_http(api_url, admin_key, name_of(builder), "1.0.0")
        assert (record["status"], record["warnings"]) == ("ready", []), record
        feeds = real_shapes.sample_inputs(builder)
        result = triton_infer(triton_client, name_of(builder), feeds)
        assert_same(result, reference(real_shapes.BUILDERS[builder](), feeds))

    # A free dim that must be >= 2 serves a request of length 400.
    audio = real_shapes.sample_inputs("reflect_pad_audio")["audio"]
    assert audio.shape == (2, 400)
    metadata = triton_client.get_model_metadata("optional-initializer-input")
    assert [entry["name"] for entry in metadata["inputs"]] == ["x"]  # the default stays inside
    names = triton_client.get_model_metadata("punctuated-names")
    assert [entry["name"] for entry in names["outputs"]] == [
        "scores.logits:0",
        "encoder/layer.0/out:0",
    ]


@pytest.mark.parametrize(
    "builder, feeds, says",
    [
        ("reflect_pad_audio", {"audio": np.ones((1, 1), np.float32)}, "Pad"),
        ("stride32_detector", {"image": np.ones((1, 3, 33, 33), np.float32)}, "Concat"),
    ],
)
def test_a_shape_the_model_rejects_at_run_time_is_400_and_the_worker_goes_on(
    api_url: str, admin_key: str, triton_client: triton.InferenceServerClient,
    worker: subprocess.Popen, builder: str, feeds: dict, says: str,
) -> None:  # fmt: skip
    model = name_of(builder)
    content = real_shapes.BUILDERS[builder]().SerializeToString()
    assert post_version(api_url, admin_key, model, content).status_code == 202
    assert settled_http(api_url, admin_key, model, "1.0.0")["status"] == "ready"
    with pytest.raises(InferenceServerException) as caught:
        triton_infer(triton_client, model, feeds)
    assert caught.value.status() == "400"
    message = caught.value.message()
    assert f"model {model!r} version 1.0.0 could not run on inputs" in message
    ((name, array),) = feeds.items()
    assert f"{name} {list(array.shape)}" in message and says in message
    assert worker.poll() is None
    good = real_shapes.sample_inputs(builder)
    assert_same(
        triton_infer(triton_client, model, good), reference(real_shapes.BUILDERS[builder](), good)
    )


def test_a_model_no_made_up_input_runs_is_ready_with_a_warning(
    api_url: str, admin_key: str, triton_client: triton.InferenceServerClient,
    worker: subprocess.Popen,
) -> None:  # fmt: skip
    content = real_shapes.long_only().SerializeToString()
    assert post_version(api_url, admin_key, "long", content).status_code == 202
    record = settled_http(api_url, admin_key, "long", "1.0.0")
    assert record["status"] == "ready"
    (warning,) = record["warnings"]
    assert warning.startswith("no smoke run succeeded: ") and "warmup" in warning
    assert triton_client.is_model_ready("long")
    x = np.arange(6000, dtype=np.float32).reshape(1, 6000)
    assert triton_infer(triton_client, "long", {"x": x}).as_numpy("y").tolist() == [[5000.0]]


def test_the_version_record_keeps_what_the_file_says(
    api_url: str, admin_key: str, worker: subprocess.Popen
) -> None:
    model = onnx_models.tiny_mlp()
    model.producer_name, model.producer_version, model.doc_string = "exporter", "2.1", "a tiny MLP"
    helper.set_model_props(model, {"author": "team", "classes": "cat,dog"})
    assert (
        post_version(api_url, admin_key, "described", model.SerializeToString()).status_code == 202
    )
    record = settled_http(api_url, admin_key, "described", "1.0.0")
    assert record["status"] == "ready"
    assert (record["producer_name"], record["producer_version"]) == ("exporter", "2.1")
    assert record["opset_imports"] == {"ai.onnx": onnx_models.OPSET}
    assert record["doc_string"] == "a tiny MLP"
    assert record["metadata_props"] == {"author": "team", "classes": "cat,dog"}
    assert (record["artifact_format"], record["warmup"], record["warnings"]) == ("onnx", False, [])
    headers = {"Authorization": f"Bearer {admin_key}"}
    metadata = httpx.get(f"{api_url}/v2/models/described", headers=headers).json()
    assert metadata["platform"] == "onnxruntime_onnx" and metadata["versions"] == ["1.0.0"]
