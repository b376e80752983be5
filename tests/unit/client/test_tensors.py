"""The client's tensor encoding against the server's own codec, and the files the CLI reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference_farm.client.tensors import (
    DTYPES,
    datatype_of,
    decode_outputs,
    decode_response,
    encode_request,
    job_request,
    json_inputs,
    outputs_to_json,
    read_input,
    write_npz,
)
from inference_farm.protocol.codec import RequestedOutput, build_response, parse_request
from inference_farm.protocol.packing import pack

DATATYPES = list(DTYPES)
TEXT = [b"", b"plain", "h\u00e9llo \u2603".encode(), b"x" * 300]


def sample(datatype: str, shape: tuple[int, ...] = (2, 3), text_only: bool = False) -> np.ndarray:
    """An array of datatype and shape, with extreme values; BYTES includes non-UTF-8 bytes."""
    count = int(np.prod(shape))
    if datatype == "BYTES":
        pool = TEXT if text_only else [*TEXT, b"\x00\xff\xfe"]
        return np.array([pool[i % len(pool)] for i in range(count)], object).reshape(shape)
    dtype = DTYPES[datatype]
    if datatype == "BOOL":
        return (np.arange(count) % 3 == 0).reshape(shape)
    if dtype.kind == "f":
        values = [np.finfo(dtype).min, -1.5, 0.0, 0.1, np.finfo(dtype).max, np.inf]
    else:
        values = [np.iinfo(dtype).min, 0, 1, np.iinfo(dtype).max]
    return np.array([values[i % len(values)] for i in range(count)], dtype=dtype).reshape(shape)


def check_equal(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tolist() == want.tolist()


@pytest.mark.parametrize("shape", [(2, 3), (), (0, 4)], ids=["2x3", "scalar", "empty"])
def test_binary_request_round_trips_through_the_server_parser(shape: tuple[int, ...]) -> None:
    inputs = {f"in_{datatype}": sample(datatype, shape) for datatype in DATATYPES}
    body, header_length = encode_request(inputs, parameters={"timeout": 2_000_000})
    parsed = parse_request(body, header_length)
    assert parsed.parameters == {"timeout": 2_000_000, "binary_data_output": True}
    assert parsed.outputs is None
    for tensor, (name, array) in zip(parsed.inputs, inputs.items(), strict=True):
        assert (tensor.name, tensor.datatype, tensor.shape) == (name, name[3:], list(shape))
        check_equal(tensor.array, array)


def test_requested_outputs_ask_for_binary_data() -> None:
    body, header_length = encode_request({"x": np.zeros((1, 4), np.float32)}, outputs=["y"])
    parsed = parse_request(body, header_length)
    assert [(o.name, o.binary) for o in parsed.outputs or []] == [("y", True)]
    assert "binary_data_output" not in parsed.parameters


def test_big_endian_and_non_contiguous_arrays_are_sent_little_endian_row_major() -> None:
    big = np.arange(6, dtype=">i4").reshape(2, 3)
    strided = np.arange(12, dtype=np.float64).reshape(3, 4)[:, ::2].T
    body, header_length = encode_request({"big": big, "strided": strided})
    arrays = {t.name: t.array for t in parse_request(body, header_length).inputs}
    assert arrays["big"].tolist() == big.tolist() and arrays["big"].dtype == np.int32
    assert arrays["strided"].tolist() == strided.tolist()


def test_str_and_fixed_width_text_are_bytes() -> None:
    inputs = {"u": np.array(["a", "\u00e9t\u00e9"]), "s": np.array([b"ab", b"c"])}
    body, header_length = encode_request(inputs)
    arrays = {t.name: t.array.tolist() for t in parse_request(body, header_length).inputs}
    assert arrays == {"u": [b"a", "\u00e9t\u00e9".encode()], "s": [b"ab", b"c"]}


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_server_responses_decode_to_the_same_arrays(binary: bool) -> None:
    arrays = {f"out_{datatype}": sample(datatype) for datatype in DATATYPES}
    packed = {name: pack(array, name[4:]) for name, array in arrays.items()}
    packed["probs"] = {"datatype": "BYTES", "shape": [2], "json": [{"0": 0.25}, [1, "a"]]}
    body, header_length = build_response("m", "1.0.0", "id", packed, None, binary_default=binary)
    assert (header_length is not None) is binary
    decoded = decode_response(body, header_length)
    assert list(decoded) == [*arrays, "probs"]
    for name, array in arrays.items():
        check_equal(decoded[name], array)
    assert decoded["probs"] == [{"0": 0.25}, [1, "a"]]


def test_a_mix_of_binary_and_json_outputs_decodes_in_order() -> None:
    packed = {"a": pack(sample("FP32"), "FP32"), "b": pack(sample("BYTES"), "BYTES"),
              "c": pack(sample("INT8"), "INT8")}  # fmt: skip
    requested = [RequestedOutput("a", {"binary_data": True}), RequestedOutput("b"),
                 RequestedOutput("c", {"binary_data": True})]  # fmt: skip
    body, header_length = build_response("m", "1", None, packed, requested)
    decoded = decode_response(body, header_length)
    for name, datatype in [("a", "FP32"), ("b", "BYTES"), ("c", "INT8")]:
        check_equal(decoded[name], sample(datatype))


def test_job_results_decode_from_their_json_document() -> None:
    packed = {"y": pack(sample("FP16"), "FP16"), "t": pack(sample("BYTES"), "BYTES")}
    body, _ = build_response("m", "1", None, packed, None)
    decoded = decode_outputs(json.loads(body))
    check_equal(decoded["y"], sample("FP16"))
    check_equal(decoded["t"], sample("BYTES"))


def test_cut_short_binary_data_is_an_error() -> None:
    body, header_length = build_response(
        "m", "1", None, {"y": pack(sample("FP32"), "FP32")}, None, binary_default=True
    )
    with pytest.raises(ValueError, match="cut short"):
        decode_response(body[:-1], header_length)


@pytest.mark.parametrize(
    "dtype, datatype",
    [(np.bool_, "BOOL"), (np.int8, "INT8"), (np.int16, "INT16"), (np.int32, "INT32"),
     (np.int64, "INT64"), (np.uint8, "UINT8"), (np.uint16, "UINT16"), (np.uint32, "UINT32"),
     (np.uint64, "UINT64"), (np.float16, "FP16"), (np.float32, "FP32"), (np.float64, "FP64"),
     (object, "BYTES"), ("S3", "BYTES"), ("U3", "BYTES"), (">f4", "FP32"), ("<u2", "UINT16")],
)  # fmt: skip
def test_datatype_of_numpy_dtypes(dtype: object, datatype: str) -> None:
    assert datatype_of(np.zeros(2, dtype=dtype)) == datatype


@pytest.mark.parametrize("dtype", [np.complex64, "M8[s]", "m8[s]"])
def test_dtypes_without_a_datatype_are_refused(dtype: object) -> None:
    with pytest.raises(ValueError, match="no Open Inference Protocol datatype"):
        datatype_of(np.zeros(2, dtype=dtype))


def test_json_inputs_parse_on_the_server_as_the_same_arrays() -> None:
    inputs = {f"in_{datatype}": sample(datatype, text_only=True) for datatype in DATATYPES}
    item = job_request("m", inputs, "1.0.0", ["y"], 7, 2.5)
    assert (item["model"], item["version"], item["priority"], item["timeout"]) == (
        "m", "1.0.0", 7, 2.5
    )  # fmt: skip
    assert item["outputs"] == [{"name": "y"}]
    document = {"inputs": item["inputs"]}
    parsed = parse_request(json.dumps(document).encode(), None)
    for tensor in parsed.inputs:
        check_equal(tensor.array, inputs[tensor.name])
    assert all(not isinstance(e["data"][0], list) for e in item["inputs"])  # flat data


def test_json_inputs_refuse_bytes_that_are_not_utf8() -> None:
    with pytest.raises(ValueError, match="UTF-8"):
        json_inputs({"t": np.array([b"\xff"], object)})
    assert "version" not in job_request("m", {"x": np.zeros(1)}, None, None, None, None)


# --- files ---


def test_read_npy_npz_and_json_inputs(tmp_path: Path) -> None:
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.save(tmp_path / "x.npy", x)
    np.savez(tmp_path / "all.npz", a=x, b=np.array(["p", "q"]))
    (tmp_path / "list.json").write_text("[[1, 2], [3, 4]]")
    (tmp_path / "typed.json").write_text(
        '{"data": [1, 2, 3, 4], "datatype": "FP32", "shape": [2, 2]}'
    )
    (tmp_path / "text.json").write_text('{"data": ["a", "b"], "datatype": "BYTES"}')

    check_equal(read_input(f"x={tmp_path / 'x.npy'}")["x"], x)
    whole = read_input(str(tmp_path / "all.npz"))
    assert list(whole) == ["a", "b"] and whole["b"].tolist() == ["p", "q"]
    assert list(read_input(f"b={tmp_path / 'all.npz'}")) == ["b"]
    assert read_input(f"l={tmp_path / 'list.json'}")["l"].tolist() == [[1, 2], [3, 4]]
    typed = read_input(f"t={tmp_path / 'typed.json'}")["t"]
    assert (typed.dtype, typed.shape) == (np.float32, (2, 2))
    assert datatype_of(read_input(f"s={tmp_path / 'text.json'}")["s"]) == "BYTES"


@pytest.mark.parametrize(
    "content, spec, message",
    [
        (None, "x={path}", "input file not found"),
        (b"just some text", "x={path}", "does not hold an array"),
        (b"{not json", "x={json}", "does not hold an array"),
        (b'{"a": 1}', "x={json}", "does not hold an array"),
        (b'[{"a": 1}]', "x={json}", "not an array of numbers"),
        (b"[1, 2]", "{json}", "name the input"),
    ],
    ids=["missing", "text-as-npy", "bad-json", "json-object", "json-dicts", "no-name"],
)
def test_bad_input_files_say_what_is_wrong(
    tmp_path: Path, content: bytes | None, spec: str, message: str
) -> None:
    path, as_json = tmp_path / "in.npy", tmp_path / "in.json"
    if content is not None:
        path.write_bytes(content)
        as_json.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        read_input(spec.format(path=path, json=as_json))


def test_an_npz_key_that_is_absent_names_the_keys_there(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", one=np.zeros(1))
    with pytest.raises(ValueError, match="no array 'two' in it; it has one"):
        read_input(f"two={tmp_path / 'a.npz'}")


def test_outputs_as_json_and_npz(tmp_path: Path) -> None:
    outputs = {
        "y": np.array([[1.5, 2.0]], np.float32),
        "t": np.array([b"ok", b"\xff"], object),
        "probs": [{"0": 0.5}],
    }
    assert outputs_to_json(outputs) == {
        "y": {"shape": [1, 2], "datatype": "FP32", "data": [[1.5, 2.0]]},
        "t": {"shape": [2], "datatype": "BYTES", "data": ["ok", "\\xff"]},
        "probs": {"shape": [1], "data": [{"0": 0.5}]},
    }
    write_npz(outputs, tmp_path / "out.npz")
    with np.load(tmp_path / "out.npz", allow_pickle=False) as saved:
        assert saved["y"].tolist() == [[1.5, 2.0]]
        assert saved["t"].tolist() == [b"ok", b"\xff"]
        assert [json.loads(text) for text in saved["probs"]] == [{"0": 0.5}]
