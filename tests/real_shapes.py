"""Tiny ONNX models with the shapes and quirks of real-world exports, built with the onnx helper.

Each builder returns a checked `onnx.ModelProto` (opset 17, ai.onnx.ml 3, ir_version 8) of a
few KB that runs in milliseconds on CPU. `sample_inputs(name)` gives inputs that run,
`failing_inputs(name)` inputs that the model loads for but onnxruntime rejects at run time.
The archive helpers write zip and tar files from member name -> bytes, so that tests can craft
hostile archives, and `external_model_bytes` makes a model whose weight points anywhere.
"""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, external_data_helper, helper, numpy_helper

OPSET = 17
ML_OPSET = 3
IR_VERSION = 8

# external_data_archive: the weight's shape, file names and values.
EXTERNAL_WEIGHT_SHAPE = (256, 4)
EXTERNAL_MODEL_NAME = "model.onnx"
EXTERNAL_DATA_NAME = "weights.bin"

# ZipMap's class labels in sequence_and_map_outputs.
CLASS_LABELS = [10, 20, 30]


def _model(graph: onnx.GraphProto, ml: bool = False) -> onnx.ModelProto:
    """A checked model around graph: opset 17 (and ai.onnx.ml 3 when ml), ir_version 8."""
    opsets = [helper.make_opsetid("", OPSET)]
    if ml:
        opsets.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    model = helper.make_model(graph, opset_imports=opsets, producer_name="tests.real_shapes")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def _tensor(name: str, elem: int, shape: list[int | str] | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, shape)


def _const(name: str, value: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(value, name)


def reflect_pad_audio() -> onnx.ModelProto:
    """audio FP32 [batch, samples] -> reflect Pad 1 each side, ReduceMean -> level FP32 [batch]."""
    graph = helper.make_graph(
        [
            helper.make_node("Pad", ["audio", "pads"], ["padded"], mode="reflect"),
            helper.make_node("ReduceMean", ["padded"], ["level"], axes=[1], keepdims=0),
        ],
        "reflect_pad_audio",
        [_tensor("audio", TensorProto.FLOAT, ["batch", "samples"])],
        [_tensor("level", TensorProto.FLOAT, ["batch"])],
        initializer=[_const("pads", np.array([0, 1, 0, 1], np.int64))],
    )
    return _model(graph)


def stride32_detector() -> onnx.ModelProto:
    """image FP32 [1, 3, height, width] -> Concat(image, x32 Resize of /32 AveragePool) [1, 6, H, W]

    Runs only when height and width are multiples of 32: otherwise Concat fails at run time.
    """
    graph = helper.make_graph(
        [
            helper.make_node(
                "AveragePool", ["image"], ["coarse"], kernel_shape=[32, 32], strides=[32, 32]
            ),
            helper.make_node("Resize", ["coarse", "", "scales"], ["upsampled"], mode="nearest"),
            helper.make_node("Concat", ["image", "upsampled"], ["features"], axis=1),
        ],
        "stride32_detector",
        [_tensor("image", TensorProto.FLOAT, [1, 3, "height", "width"])],
        [_tensor("features", TensorProto.FLOAT, [1, 6, "height", "width"])],
        initializer=[_const("scales", np.array([1, 1, 32, 32], np.float32))],
    )
    return _model(graph)


def symbolic_expression_dims() -> onnx.ModelProto:
    """x FP32 [n, 8] -> doubled FP32 [2*n, 8] (x over x) and padded FP32 [n+1, 8] (x over zeros)."""
    graph = helper.make_graph(
        [
            helper.make_node("Concat", ["x", "x"], ["doubled"], axis=0),
            helper.make_node("Concat", ["x", "zero_row"], ["padded"], axis=0),
        ],
        "symbolic_expression_dims",
        [_tensor("x", TensorProto.FLOAT, ["n", 8])],
        [
            _tensor("doubled", TensorProto.FLOAT, ["2*n", 8]),
            _tensor("padded", TensorProto.FLOAT, ["n+1", 8]),
        ],
        initializer=[_const("zero_row", np.zeros((1, 8), np.float32))],
    )
    return _model(graph)


def vad_like_recurrent() -> onnx.ModelProto:
    """Silero-VAD-like: input [batch, samples], state [2, batch, 16], sr INT64 [] -> output, stateN.

    mean = mean(input, axis 1) [batch, 1]; stateN = 0.5 * state + mean (broadcast);
    output [batch, 1] = Sigmoid(mean * sr / 16000 + mean of stateN over axes 0 and 2).
    """
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1], keepdims=1),
            helper.make_node("Cast", ["sr"], ["sr_float"], to=TensorProto.FLOAT),
            helper.make_node("Div", ["sr_float", "reference_rate"], ["rate"]),
            helper.make_node("Mul", ["mean", "rate"], ["scaled"]),
            helper.make_node("Mul", ["state", "decay"], ["decayed"]),
            helper.make_node("Add", ["decayed", "mean"], ["stateN"]),
            helper.make_node("ReduceMean", ["stateN"], ["memory"], axes=[0, 2], keepdims=0),
            helper.make_node("Unsqueeze", ["memory", "last_axis"], ["memory_column"]),
            helper.make_node("Add", ["scaled", "memory_column"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["output"]),
        ],
        "vad_like_recurrent",
        [
            _tensor("input", TensorProto.FLOAT, ["batch", "samples"]),
            _tensor("state", TensorProto.FLOAT, [2, "batch", 16]),
            _tensor("sr", TensorProto.INT64, []),
        ],
        [
            _tensor("output", TensorProto.FLOAT, ["batch", 1]),
            _tensor("stateN", TensorProto.FLOAT, [2, "batch", 16]),
        ],
        initializer=[
            _const("reference_rate", np.array(16000, np.float32)),
            _const("decay", np.array(0.5, np.float32)),
            _const("last_axis", np.array([1], np.int64)),
        ],
    )
    return _model(graph)


def vad_reference(
    inputs: Mapping[str, np.ndarray],
) -> tuple[np.ndarray, np.ndarray]:
    """What vad_like_recurrent computes, in numpy: (output, stateN)."""
    mean = inputs["input"].mean(axis=1, keepdims=True)
    state_n = 0.5 * inputs["state"] + mean
    logit = mean * (np.float32(inputs["sr"]) / 16000) + state_n.mean(axis=(0, 2))[:, None]
    return (1 / (1 + np.exp(-logit))).astype(np.float32), state_n.astype(np.float32)


def punctuated_names() -> onnx.ModelProto:
    """input/ids:0 INT64 [batch, seq] -> scores.logits:0 [batch, seq], encoder/layer.0/out:0 [batch]

    scores.logits:0 = 0.5 * float(ids); encoder/layer.0/out:0 = its sum over seq. Node and
    intermediate names carry '/', '.' and ':' too, as in TensorFlow and PyTorch exports.
    """
    graph = helper.make_graph(
        [
            helper.make_node(
                "Cast",
                ["input/ids:0"],
                ["encoder/layer.0/cast:0"],
                name="encoder/layer.0/Cast",
                to=TensorProto.FLOAT,
            ),
            helper.make_node(
                "Mul",
                ["encoder/layer.0/cast:0", "encoder/layer.0/scale:0"],
                ["scores.logits:0"],
                name="scores/Mul:0",
            ),
            helper.make_node(
                "ReduceSum",
                ["scores.logits:0", "encoder/layer.0/axes:0"],
                ["encoder/layer.0/out:0"],
                name="encoder/layer.0/ReduceSum.1",
                keepdims=0,
            ),
        ],
        "punctuated/names.v1:0",
        [_tensor("input/ids:0", TensorProto.INT64, ["batch", "seq"])],
        [
            _tensor("scores.logits:0", TensorProto.FLOAT, ["batch", "seq"]),
            _tensor("encoder/layer.0/out:0", TensorProto.FLOAT, ["batch"]),
        ],
        initializer=[
            _const("encoder/layer.0/scale:0", np.array(0.5, np.float32)),
            _const("encoder/layer.0/axes:0", np.array([1], np.int64)),
        ],
    )
    return _model(graph)


def optional_initializer_input() -> onnx.ModelProto:
    """x FP32 [n, 4] and scale FP32 [1] (initializer default [2.0]) -> y FP32 [n, 4] = x * scale.

    onnxruntime 1.32 lists only x in session.get_inputs(); scale appears in
    session.get_overridable_initializers() (shape [1], tensor(float)), may be left out of
    run() (then y = 2 * x) or fed to override the default. Loading logs a warning that the
    initializer "appears in graph inputs and will not be treated as constant".
    """
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "scale"], ["y"])],
        "optional_initializer_input",
        [
            _tensor("x", TensorProto.FLOAT, ["n", 4]),
            _tensor("scale", TensorProto.FLOAT, [1]),
        ],
        [_tensor("y", TensorProto.FLOAT, ["n", 4])],
        initializer=[_const("scale", np.array([2.0], np.float32))],
    )
    return _model(graph)


def sequence_and_map_outputs() -> onnx.ModelProto:
    """probs FP32 [n, 3] -> label INT64 [n], pieces seq(FP32 [n, 3]), scores seq(map(int64, FP32)).

    label = CLASS_LABELS[argmax(probs)]; pieces = [probs, 2 * probs] via SequenceConstruct;
    scores = ZipMap(probs) with classlabels_int64s CLASS_LABELS, as scikit-learn exports do.
    """
    graph = helper.make_graph(
        [
            helper.make_node("ArgMax", ["probs"], ["best"], axis=1, keepdims=0),
            helper.make_node("Gather", ["labels", "best"], ["label"], axis=0),
            helper.make_node("Add", ["probs", "probs"], ["doubled"]),
            helper.make_node("SequenceConstruct", ["probs", "doubled"], ["pieces"]),
            helper.make_node(
                "ZipMap",
                ["probs"],
                ["scores"],
                domain="ai.onnx.ml",
                classlabels_int64s=CLASS_LABELS,
            ),
        ],
        "sequence_and_map_outputs",
        [_tensor("probs", TensorProto.FLOAT, ["n", 3])],
        [
            _tensor("label", TensorProto.INT64, ["n"]),
            helper.make_value_info(
                "pieces",
                helper.make_sequence_type_proto(
                    helper.make_tensor_type_proto(TensorProto.FLOAT, ["n", 3])
                ),
            ),
            helper.make_value_info(
                "scores",
                helper.make_sequence_type_proto(
                    helper.make_map_type_proto(
                        TensorProto.INT64, helper.make_tensor_type_proto(TensorProto.FLOAT, [])
                    )
                ),
            ),
        ],
        initializer=[_const("labels", np.array(CLASS_LABELS, np.int64))],
    )
    return _model(graph, ml=True)


def external_weight() -> np.ndarray:
    """The FP32 [256, 4] weight of the external-data model: arange / 1024, 4 KiB."""
    count = EXTERNAL_WEIGHT_SHAPE[0] * EXTERNAL_WEIGHT_SHAPE[1]
    return (np.arange(count, dtype=np.float32) / 1024).reshape(EXTERNAL_WEIGHT_SHAPE)


def _external_graph_model() -> onnx.ModelProto:
    """x FP32 [n, 256] -> MatMul by external_weight() -> y FP32 [n, 4], weight inline."""
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "weight"], ["y"])],
        "external_data_model",
        [_tensor("x", TensorProto.FLOAT, ["n", EXTERNAL_WEIGHT_SHAPE[0]])],
        [_tensor("y", TensorProto.FLOAT, ["n", EXTERNAL_WEIGHT_SHAPE[1]])],
        initializer=[_const("weight", external_weight())],
    )
    return _model(graph)


def external_data_archive(folder: Path) -> tuple[Path, Path]:
    """Write folder/model.onnx (x [n, 256] -> y [n, 4]) whose weight is in folder/weights.bin.

    Returns (model_path, data_path). The weight, external_weight(), is 4096 bytes at offset 0.
    """
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / EXTERNAL_MODEL_NAME
    onnx.save_model(
        _external_graph_model(),
        str(model_path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=EXTERNAL_DATA_NAME,
        size_threshold=0,
    )
    return model_path, folder / EXTERNAL_DATA_NAME


def external_model_bytes(location: str) -> bytes:
    """The serialized external-data model with its weight's location set to location, as given.

    No data is written: offset 0, length 4096, so beside external_data_archive's weights.bin
    with location 'weights.bin' it runs; '../x.bin', '/etc/passwd', 'sub/../../x' or
    '*/_ORT_MEM_ADDR_/*' make models that point outside their folder or into memory.
    """
    model = _external_graph_model()
    (weight,) = model.graph.initializer
    length = len(weight.raw_data)
    external_data_helper.set_external_data(weight, location=location, offset=0, length=length)
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    return model.SerializeToString()


def zip_archive(
    dest: Path, members: Mapping[str, bytes], symlinks: Mapping[str, str] | None = None
) -> Path:
    """Write a zip at dest holding members (name -> bytes) under their names exactly as given.

    symlinks (name -> target) adds Unix symbolic-link entries. Returns dest.
    """
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0)), data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
            info.create_system = 3  # Unix, so that external_attr's mode counts
            info.external_attr = (0o120777 << 16) & 0xFFFF0000
            archive.writestr(info, target)
    return dest


def tar_archive(
    dest: Path,
    members: Mapping[str, bytes],
    gzip: bool,
    symlinks: Mapping[str, str] | None = None,
) -> Path:
    """Write a tar (gzipped when gzip) at dest holding members (name -> bytes) as given.

    symlinks (name -> target) adds symbolic-link members. Returns dest.
    """
    with tarfile.open(dest, "w:gz" if gzip else "w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return dest


def long_only() -> onnx.ModelProto:
    """x FP32 [1, T] -> element 5000 of it: no made-up input is that long, a real one is."""
    index = numpy_helper.from_array(np.array([5000], np.int64), "index")
    graph = helper.make_graph(
        [helper.make_node("Gather", ["x", "index"], ["y"], axis=1)],
        "long_only",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, "T"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])],
        initializer=[index],
    )
    return _model(graph)


def fixed_shape_broken() -> onnx.ModelProto:
    """x FP32 [1, 3] -> Reshape to the constant [2, 2] -> y FP32 [2, 2]: loads, never runs."""
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        "fixed_shape_broken",
        [_tensor("x", TensorProto.FLOAT, [1, 3])],
        [_tensor("y", TensorProto.FLOAT, [2, 2])],
        initializer=[_const("shape", np.array([2, 2], np.int64))],
    )
    return _model(graph)


def needs_sample_values() -> onnx.ModelProto:
    """x FP32 [1, 8] and stride INT64 [] -> y FP32 [1, k] = x[:, 0:8:stride]; stride 0 fails.

    Fixed input shapes, so all-zero inputs look valid, but Range (which onnxruntime may fuse
    into a Slice) rejects a zero step at run time; a realistic stride such as 2 runs.
    """
    graph = helper.make_graph(
        [
            helper.make_node("Range", ["start", "limit", "stride"], ["indices"]),
            helper.make_node("Gather", ["x", "indices"], ["y"], axis=1),
        ],
        "needs_sample_values",
        [
            _tensor("x", TensorProto.FLOAT, [1, 8]),
            _tensor("stride", TensorProto.INT64, []),
        ],
        [_tensor("y", TensorProto.FLOAT, [1, "k"])],
        initializer=[
            _const("start", np.array(0, np.int64)),
            _const("limit", np.array(8, np.int64)),
        ],
    )
    return _model(graph)


# The builders that take no arguments, by name (external_data_archive takes a folder).
BUILDERS: dict[str, Callable[[], onnx.ModelProto]] = {
    "reflect_pad_audio": reflect_pad_audio,
    "stride32_detector": stride32_detector,
    "symbolic_expression_dims": symbolic_expression_dims,
    "vad_like_recurrent": vad_like_recurrent,
    "punctuated_names": punctuated_names,
    "optional_initializer_input": optional_initializer_input,
    "sequence_and_map_outputs": sequence_and_map_outputs,
    "fixed_shape_broken": fixed_shape_broken,
    "needs_sample_values": needs_sample_values,
}


def _ramp(shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
    """Deterministic, non-constant values in [0, 1) of shape."""
    count = int(np.prod(shape))
    return ((np.arange(count) % 7) / 7).astype(dtype).reshape(shape)


def sample_inputs(name: str) -> dict[str, np.ndarray]:
    """Inputs that run for the model `name` (a BUILDERS key or 'external_data_archive').

    fixed_shape_broken has none that run: it gets inputs of its declared shapes, which fail.
    """
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], np.float32)
    samples: dict[str, Callable[[], dict[str, np.ndarray]]] = {
        "reflect_pad_audio": lambda: {"audio": _ramp((2, 400))},
        "stride32_detector": lambda: {"image": _ramp((1, 3, 64, 96))},
        "symbolic_expression_dims": lambda: {"x": _ramp((3, 8))},
        "vad_like_recurrent": lambda: {
            "input": _ramp((1, 512)),
            "state": np.zeros((2, 1, 16), np.float32),
            "sr": np.array(16000, np.int64),
        },
        "punctuated_names": lambda: {"input/ids:0": np.array([[1, 2, 3], [4, 5, 6]], np.int64)},
        "optional_initializer_input": lambda: {"x": _ramp((2, 4))},
        "sequence_and_map_outputs": lambda: {"probs": probs.copy()},
        "external_data_archive": lambda: {"x": _ramp((2, EXTERNAL_WEIGHT_SHAPE[0]))},
        "fixed_shape_broken": lambda: {"x": _ramp((1, 3))},
        "needs_sample_values": lambda: {
            "x": np.arange(8, dtype=np.float32).reshape(1, 8),
            "stride": np.array(2, np.int64),
        },
    }
    return samples[name]()


def failing_inputs(name: str) -> list[dict[str, np.ndarray]]:
    """Inputs that the model `name` accepts by its declared types but onnxruntime fails to run.

    Empty for models that run on any input of their declared shapes.
    """
    failing: dict[str, Callable[[], list[dict[str, np.ndarray]]]] = {
        "reflect_pad_audio": lambda: [{"audio": _ramp((2, 1))}],
        "stride32_detector": lambda: [
            {"image": _ramp((1, 3, 1, 1))},
            {"image": _ramp((1, 3, 33, 33))},
            {"image": _ramp((1, 3, 64, 80))},
        ],
        "fixed_shape_broken": lambda: [{"x": _ramp((1, 3))}],
        "needs_sample_values": lambda: [
            {"x": np.zeros((1, 8), np.float32), "stride": np.array(0, np.int64)}
        ],
    }
    return failing.get(name, list)()
