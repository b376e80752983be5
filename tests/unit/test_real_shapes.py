"""tests/real_shapes builds checked, tiny models that onnxruntime loads and runs as documented."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from tests import real_shapes
from tests.real_shapes import (
    BUILDERS,
    CLASS_LABELS,
    EXTERNAL_WEIGHT_SHAPE,
    external_data_archive,
    external_model_bytes,
    external_weight,
    failing_inputs,
    fixed_shape_broken,
    needs_sample_values,
    optional_initializer_input,
    punctuated_names,
    reflect_pad_audio,
    sample_inputs,
    sequence_and_map_outputs,
    stride32_detector,
    symbolic_expression_dims,
    tar_archive,
    vad_like_recurrent,
    vad_reference,
    zip_archive,
)

ort = pytest.importorskip("onnxruntime")
from onnxruntime.capi.onnxruntime_pybind11_state import (  # noqa: E402
    Fail,
    InvalidArgument,
)

RUN_ERRORS = (Fail, InvalidArgument)


def session(model: onnx.ModelProto | str | Path) -> Any:
    """An onnxruntime CPU session on a model or a path, with its error log quietened."""
    options = ort.SessionOptions()
    options.log_severity_level = 4
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def dims(value: onnx.ValueInfoProto) -> list[int | str]:
    """A declared tensor shape: dim_value, or dim_param where symbolic."""
    return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]


def declared(model: onnx.ModelProto) -> dict[str, list[int | str]]:
    """The declared shapes of a model's tensor inputs and outputs, by name."""
    values = [*model.graph.input, *model.graph.output]
    return {v.name: dims(v) for v in values if v.type.HasField("tensor_type")}


# Every builder


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_builder_is_checked_tiny_and_documented(name: str) -> None:
    builder = BUILDERS[name]
    model = builder()
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8
    opsets = {opset.domain: opset.version for opset in model.opset_import}
    assert opsets[""] == 17
    assert opsets.get("ai.onnx.ml", 3) == 3
    assert model.ByteSize() < 8 * 1024
    assert builder.__doc__ and builder.__doc__.strip()
    assert builder.__doc__.strip().splitlines()[0].strip()


@pytest.mark.parametrize("name", sorted(set(BUILDERS) - {"fixed_shape_broken"}))
def test_sample_inputs_run(name: str) -> None:
    sess = session(BUILDERS[name]())
    inputs = sample_inputs(name)
    assert {i.name for i in sess.get_inputs()} <= set(inputs)
    outputs = sess.run(None, inputs)
    assert len(outputs) == len(sess.get_outputs())


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_failing_inputs_fail_at_run_time(name: str) -> None:
    sess = session(BUILDERS[name]())
    for inputs in failing_inputs(name):
        with pytest.raises(RUN_ERRORS):
            sess.run(None, inputs)


def test_failing_inputs_cover_the_models_that_fail() -> None:
    failing = {name for name in BUILDERS if failing_inputs(name)}
    assert failing == {
        "reflect_pad_audio",
        "stride32_detector",
        "fixed_shape_broken",
        "needs_sample_values",
    }


def test_sample_inputs_are_fresh_arrays() -> None:
    first = sample_inputs("reflect_pad_audio")["audio"]
    first[:] = 99
    assert not (sample_inputs("reflect_pad_audio")["audio"] == 99).any()


# 1. reflect_pad_audio


def test_reflect_pad_audio_shapes() -> None:
    assert declared(reflect_pad_audio()) == {
        "audio": ["batch", "samples"],
        "level": ["batch"],
    }


@pytest.mark.parametrize("samples", [2, 3, 400])
def test_reflect_pad_audio_matches_numpy(samples: int) -> None:
    audio = np.random.default_rng(samples).standard_normal((2, samples)).astype(np.float32)
    (level,) = session(reflect_pad_audio()).run(None, {"audio": audio})
    expected = np.pad(audio, ((0, 0), (1, 1)), mode="reflect").mean(axis=1)
    assert level.shape == (2,)
    np.testing.assert_allclose(level, expected, rtol=1e-5, atol=1e-6)


def test_reflect_pad_audio_rejects_one_sample() -> None:
    sess = session(reflect_pad_audio())
    with pytest.raises(InvalidArgument, match="Pad reflect"):
        sess.run(None, {"audio": np.ones((1, 1), np.float32)})


# 2. stride32_detector


def test_stride32_detector_shapes() -> None:
    assert declared(stride32_detector()) == {
        "image": [1, 3, "height", "width"],
        "features": [1, 6, "height", "width"],
    }


@pytest.mark.parametrize(("height", "width"), [(64, 96), (32, 32)])
def test_stride32_detector_runs_on_multiples_of_32(height: int, width: int) -> None:
    image = np.random.default_rng(0).standard_normal((1, 3, height, width)).astype(np.float32)
    (features,) = session(stride32_detector()).run(None, {"image": image})
    assert features.shape == (1, 6, height, width)
    np.testing.assert_array_equal(features[:, :3], image)
    blocks = image.reshape(1, 3, height // 32, 32, width // 32, 32).mean(axis=(3, 5))
    expected = blocks.repeat(32, axis=2).repeat(32, axis=3)
    np.testing.assert_allclose(features[:, 3:], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("height", "width"), [(1, 1), (33, 33), (33, 64), (64, 80)])
def test_stride32_detector_fails_off_multiples_of_32(height: int, width: int) -> None:
    sess = session(stride32_detector())
    image = np.zeros((1, 3, height, width), np.float32)
    with pytest.raises(RUN_ERRORS, match=r"[Cc]oncat"):
        sess.run(None, {"image": image})


# 3. symbolic_expression_dims


def test_symbolic_expression_dims_declares_expressions() -> None:
    model = symbolic_expression_dims()
    assert declared(model) == {"x": ["n", 8], "doubled": ["2*n", 8], "padded": ["n+1", 8]}
    shapes = {o.name: o.shape for o in session(model).get_outputs()}
    assert shapes == {"doubled": ["2*n", 8], "padded": ["n+1", 8]}


@pytest.mark.parametrize("n", [1, 5])
def test_symbolic_expression_dims_run(n: int) -> None:
    x = np.arange(n * 8, dtype=np.float32).reshape(n, 8)
    doubled, padded = session(symbolic_expression_dims()).run(None, {"x": x})
    np.testing.assert_array_equal(doubled, np.concatenate([x, x]))
    np.testing.assert_array_equal(padded, np.concatenate([x, np.zeros((1, 8), np.float32)]))
    assert doubled.shape == (2 * n, 8)
    assert padded.shape == (n + 1, 8)


# 4. vad_like_recurrent


def test_vad_like_recurrent_shapes() -> None:
    model = vad_like_recurrent()
    assert declared(model) == {
        "input": ["batch", "samples"],
        "state": [2, "batch", 16],
        "sr": [],
        "output": ["batch", 1],
        "stateN": [2, "batch", 16],
    }
    types = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    assert types == {
        "input": TensorProto.FLOAT,
        "state": TensorProto.FLOAT,
        "sr": TensorProto.INT64,
    }
    sess = session(model)
    assert [i.name for i in sess.get_inputs()] == ["input", "state", "sr"]
    assert sess.get_inputs()[2].shape == []


def test_vad_like_recurrent_runs_on_zeros() -> None:
    inputs = {
        "input": np.zeros((1, 512), np.float32),
        "state": np.zeros((2, 1, 16), np.float32),
        "sr": np.array(0, np.int64),
    }
    output, state_n = session(vad_like_recurrent()).run(None, inputs)
    np.testing.assert_array_equal(output, np.full((1, 1), 0.5, np.float32))
    np.testing.assert_array_equal(state_n, np.zeros((2, 1, 16), np.float32))


@pytest.mark.parametrize("sr", [8000, 16000])
def test_vad_like_recurrent_uses_sr_and_state(sr: int) -> None:
    rng = np.random.default_rng(sr)
    inputs = {
        "input": rng.standard_normal((3, 320)).astype(np.float32),
        "state": rng.standard_normal((2, 3, 16)).astype(np.float32),
        "sr": np.array(sr, np.int64),
    }
    output, state_n = session(vad_like_recurrent()).run(None, inputs)
    expected_output, expected_state = vad_reference(inputs)
    np.testing.assert_allclose(output, expected_output, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(state_n, expected_state, rtol=1e-5, atol=1e-6)


# 5. punctuated_names


def test_punctuated_names_use_slashes_dots_and_colons() -> None:
    model = punctuated_names()
    sess = session(model)
    assert [i.name for i in sess.get_inputs()] == ["input/ids:0"]
    assert [o.name for o in sess.get_outputs()] == ["scores.logits:0", "encoder/layer.0/out:0"]
    node_names = [node.name for node in model.graph.node]
    intermediates = [name for node in model.graph.node for name in node.output]
    intermediates += [init.name for init in model.graph.initializer]
    for char in "/.:":
        assert any(char in name for name in node_names)
        assert any(char in name for name in intermediates)
    assert "encoder/layer.0/cast:0" in intermediates


def test_punctuated_names_run() -> None:
    ids = np.array([[1, 2, 3], [4, 5, 6]], np.int64)
    scores, out = session(punctuated_names()).run(None, {"input/ids:0": ids})
    np.testing.assert_array_equal(scores, ids.astype(np.float32) / 2)
    np.testing.assert_array_equal(out, np.array([3.0, 7.5], np.float32))


# 6. optional_initializer_input


def test_optional_initializer_is_overridable_not_an_input() -> None:
    model = optional_initializer_input()
    assert [i.name for i in model.graph.input] == ["x", "scale"]
    assert [i.name for i in model.graph.initializer] == ["scale"]
    sess = session(model)
    assert [(i.name, i.shape, i.type) for i in sess.get_inputs()] == [
        ("x", ["n", 4], "tensor(float)")
    ]
    assert [(i.name, i.shape, i.type) for i in sess.get_overridable_initializers()] == [
        ("scale", [1], "tensor(float)")
    ]


def test_optional_initializer_defaults_and_overrides() -> None:
    sess = session(optional_initializer_input())
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    (default,) = sess.run(None, {"x": x})
    np.testing.assert_array_equal(default, x * 2)
    (override,) = sess.run(None, {"x": x, "scale": np.array([-3.0], np.float32)})
    np.testing.assert_array_equal(override, x * -3)


# 7. sequence_and_map_outputs


def test_sequence_and_map_outputs_types() -> None:
    sess = session(sequence_and_map_outputs())
    types = {o.name: o.type for o in sess.get_outputs()}
    assert types == {
        "label": "tensor(int64)",
        "pieces": "seq(tensor(float))",
        "scores": "seq(map(int64,tensor(float)))",
    }


def test_sequence_and_map_outputs_run() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3]], np.float32)
    label, pieces, scores = session(sequence_and_map_outputs()).run(None, {"probs": probs})
    np.testing.assert_array_equal(label, np.array([10, 30, 20], np.int64))
    assert isinstance(pieces, list) and len(pieces) == 2
    np.testing.assert_array_equal(pieces[0], probs)
    np.testing.assert_array_equal(pieces[1], probs * 2)
    assert isinstance(scores, list) and len(scores) == 3
    for row, mapping in zip(probs, scores, strict=True):
        assert list(mapping) == CLASS_LABELS
        np.testing.assert_allclose(list(mapping.values()), row, rtol=1e-6)


# 8. external data and archives


def test_external_data_archive_loads_from_its_folder(tmp_path: Path) -> None:
    model_path, data_path = external_data_archive(tmp_path / "model")
    assert model_path == tmp_path / "model" / "model.onnx"
    assert data_path == tmp_path / "model" / "weights.bin"
    assert data_path.stat().st_size == 256 * 4 * 4
    assert model_path.stat().st_size < 1024
    np.testing.assert_array_equal(
        np.frombuffer(data_path.read_bytes(), np.float32).reshape(EXTERNAL_WEIGHT_SHAPE),
        external_weight(),
    )
    onnx.checker.check_model(str(model_path), full_check=True)
    x = sample_inputs("external_data_archive")["x"]
    (y,) = session(model_path).run(None, {"x": x})
    assert y.shape == (2, 4)
    np.testing.assert_allclose(y, x @ external_weight(), rtol=1e-5)


def test_external_data_archive_needs_its_data(tmp_path: Path) -> None:
    model_path, data_path = external_data_archive(tmp_path)
    data_path.unlink()
    with pytest.raises(RUN_ERRORS):
        session(model_path)


def test_external_model_bytes_match_the_archive(tmp_path: Path) -> None:
    model_path, _ = external_data_archive(tmp_path)
    assert external_model_bytes("weights.bin") == model_path.read_bytes()
    other = tmp_path / "copy.onnx"
    other.write_bytes(external_model_bytes("weights.bin"))
    x = sample_inputs("external_data_archive")["x"]
    (y,) = session(other).run(None, {"x": x})
    np.testing.assert_allclose(y, x @ external_weight(), rtol=1e-5)


@pytest.mark.parametrize(
    "location", ["../x.bin", "/etc/passwd", "sub/../../x", "*/_ORT_MEM_ADDR_/*", "w e:ird.bin"]
)
def test_external_model_bytes_keep_the_location_as_given(location: str) -> None:
    model = onnx.load_model_from_string(external_model_bytes(location))
    (weight,) = model.graph.initializer
    assert weight.data_location == TensorProto.EXTERNAL
    assert not weight.raw_data
    assert {e.key: e.value for e in weight.external_data} == {
        "location": location,
        "offset": "0",
        "length": "4096",
    }


MEMBERS = {
    "model.onnx": b"not really onnx",
    "../escape.bin": b"up",
    "/abs/olute.bin": b"root",
    "dir/nested/x.bin": b"deep",
}


def test_zip_archive_keeps_names_as_given(tmp_path: Path) -> None:
    dest = zip_archive(tmp_path / "a.zip", MEMBERS, symlinks={"link": "/etc/passwd"})
    assert dest == tmp_path / "a.zip"
    with zipfile.ZipFile(dest) as archive:
        assert archive.namelist() == [*MEMBERS, "link"]
        for name, data in MEMBERS.items():
            assert archive.read(name) == data
        link = archive.getinfo("link")
        assert (link.external_attr >> 16) & 0o170000 == 0o120000
        assert archive.read("link") == b"/etc/passwd"


@pytest.mark.parametrize("gzip", [False, True])
def test_tar_archive_keeps_names_as_given(tmp_path: Path, gzip: bool) -> None:
    dest = tar_archive(tmp_path / "a.tar", MEMBERS, gzip=gzip, symlinks={"link": "../../x"})
    assert (dest.read_bytes()[:2] == b"\x1f\x8b") is gzip
    with tarfile.open(dest) as archive:
        assert archive.getnames() == [*MEMBERS, "link"]
        for name, data in MEMBERS.items():
            extracted = archive.extractfile(name)
            assert extracted is not None and extracted.read() == data
        link = archive.getmember("link")
        assert link.issym() and link.linkname == "../../x"


def test_archives_hold_a_loadable_model(tmp_path: Path) -> None:
    model_path, data_path = external_data_archive(tmp_path / "src")
    members = {"m/model.onnx": model_path.read_bytes(), "m/weights.bin": data_path.read_bytes()}
    zipped = zip_archive(tmp_path / "m.zip", members)
    out = tmp_path / "out"
    with zipfile.ZipFile(zipped) as archive:
        archive.extractall(out)  # noqa: S202 (names made above)
    tarred = tar_archive(tmp_path / "m.tar.gz", members, gzip=True)
    with tarfile.open(tarred) as archive:
        names = archive.getnames()
        blob = archive.extractfile("m/weights.bin")
        assert blob is not None
        assert io.BytesIO(blob.read()).getvalue() == data_path.read_bytes()
    assert names == list(members)
    x = sample_inputs("external_data_archive")["x"]
    (y,) = session(out / "m" / "model.onnx").run(None, {"x": x})
    np.testing.assert_allclose(y, x @ external_weight(), rtol=1e-5)


# 9. fixed_shape_broken


def test_fixed_shape_broken_loads_but_fails_to_run() -> None:
    model = fixed_shape_broken()
    assert declared(model) == {"x": [1, 3], "y": [2, 2]}
    sess = session(model)
    assert [i.shape for i in sess.get_inputs()] == [[1, 3]]
    with pytest.raises(Fail, match="cannot be reshaped"):
        sess.run(None, sample_inputs("fixed_shape_broken"))


# 10. needs_sample_values


def test_needs_sample_values_fails_on_zeros_and_runs_on_real_values() -> None:
    model = needs_sample_values()
    assert declared(model) == {"x": [1, 8], "stride": [], "y": [1, "k"]}
    sess = session(model)
    zeros = {"x": np.zeros((1, 8), np.float32), "stride": np.array(0, np.int64)}
    with pytest.raises(RUN_ERRORS):
        sess.run(None, zeros)
    inputs = sample_inputs("needs_sample_values")
    (y,) = sess.run(None, inputs)
    np.testing.assert_array_equal(y, inputs["x"][:, ::2])
    (y3,) = sess.run(None, {**inputs, "stride": np.array(3, np.int64)})
    np.testing.assert_array_equal(y3, inputs["x"][:, ::3])


def test_module_constants_match_the_brief() -> None:
    assert (real_shapes.OPSET, real_shapes.ML_OPSET, real_shapes.IR_VERSION) == (17, 3, 8)
