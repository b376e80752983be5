"""The benchmark's pure parts: models, request bodies, expected answers, results table."""

from __future__ import annotations

import json
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from benchmarks import farm, grpc_load, load, results
from benchmarks.bodies import body_text, matches, write_bodies
from benchmarks.models import mlp, write_models
from benchmarks.oip import BadRequest, decode_inputs, encode_outputs
from benchmarks.run import _command, parse_args
from inference_farm.protocol.grpc import inference_pb2 as pb


def _dims(value_info: onnx.ValueInfoProto) -> list[str | int]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_models(tmp_path_factory.mktemp("models"))


@pytest.mark.parametrize(
    ("name", "width", "gemms"),
    [("tiny", 64, 2), ("heavy", 1024, 7)],
)
def test_model_signature_and_free_batch_dim(
    models: dict[str, Path], name: str, width: int, gemms: int
) -> None:
    model = onnx.load(str(models[name]))
    (x,), (y,) = model.graph.input, model.graph.output
    fp32 = onnx.TensorProto.FLOAT
    assert (x.name, x.type.tensor_type.elem_type, _dims(x)) == ("x", fp32, ["N", width])
    assert (y.name, y.type.tensor_type.elem_type, _dims(y)) == ("y", fp32, ["N", 10])
    ops = [node.op_type for node in model.graph.node]
    assert ops == ["Gemm", "Relu"] * (gemms - 1) + ["Gemm"]
    session = ort.InferenceSession(str(models[name]), providers=["CPUExecutionProvider"])
    out = session.run(None, {"x": np.zeros((5, width), np.float32)})[0]
    assert out.shape == (5, 10)


def test_models_come_from_a_fixed_seed() -> None:
    assert mlp("tiny").SerializeToString() == mlp("tiny").SerializeToString()


def test_expected_file_is_what_onnxruntime_gives_for_each_body(
    models: dict[str, Path], tmp_path: Path
) -> None:
    bodies = write_bodies(models["tiny"], tmp_path, count=5)
    session = ort.InferenceSession(str(models["tiny"]), providers=["CPUExecutionProvider"])
    lines = bodies.bodies.read_text().splitlines()
    expected = bodies.expected.read_text().splitlines()
    assert len(lines) == len(expected) == 5
    for index, (line, numbers) in enumerate(zip(lines, expected, strict=True)):
        body = json.loads(line)
        assert body["id"] == str(index)
        x = decode_inputs(body)["x"]
        assert x.shape == (1, 64)
        want = session.run(None, {"x": x})[0].ravel()
        assert np.array_equal(np.array(numbers.split(), np.float32), want)


def test_bodies_differ_from_each_other(models: dict[str, Path], tmp_path: Path) -> None:
    bodies = write_bodies(models["tiny"], tmp_path, count=4)
    assert len(set(bodies.expected.read_text().splitlines())) == 4


def test_body_text_is_oip_json() -> None:
    body = json.loads(body_text(7, np.array([0.5, -1.0], np.float32)))
    assert body == {
        "id": "7",
        "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [0.5, -1.0]}],
    }


def test_matches_uses_relative_and_absolute_tolerance() -> None:
    assert matches([100.009, 0.0], [100.0, 0.000005], rtol=1e-4, atol=1e-5)
    assert not matches([100.02, 0.0], [100.0, 0.0], rtol=1e-4, atol=1e-5)
    assert not matches([1.0], [1.0, 2.0], rtol=1e-4, atol=1e-5)


def test_oip_round_trip_echoes_the_id() -> None:
    out = encode_outputs("tiny", {"y": np.array([[1.5, 2.0]], np.float32)}, "3")
    assert out == {
        "model_name": "tiny",
        "id": "3",
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [1.5, 2.0]}],
    }
    with pytest.raises(BadRequest):
        decode_inputs({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1]}]})


def _system(label: str, **cells: dict) -> dict:
    return {"label": label, "status": "ok", "cells": cells}


def test_table_row_counts_only_correct_answers_and_sums_errors() -> None:
    base = {"wrong": 1, "non_200": 2, "socket_errors": 3, "timeouts": 4}
    system = _system(
        "farm",
        **{
            "tiny-c1": {**base, "responses": 9, "p50_ms": 0.4249, "p99_ms": 12.34},
            "tiny-c32": {**base, "correct_per_s": 3612.4},
            "heavy-c32": {**base, "correct_per_s": 604.6},
        },
    )
    assert results.row(system) == "| farm | 0.42 ms | 12.3 ms | 3,612 | 605 | 30 |"


def test_rounds_combine_into_medians_and_summed_errors() -> None:
    def cell(rate: float, p50: float, wrong: int) -> dict:
        return {"correct_per_s": rate, "p50_ms": p50, "wrong": wrong, "first_error": ""}

    rounds = [
        _system("farm", **{"tiny-c32": cell(1000, 3.0, 0)}),
        _system("farm", **{"tiny-c32": cell(3000, 1.0, 2)}),
        _system("farm", **{"tiny-c32": cell(2000, 9.0, 1) | {"first_error": "boom"}}),
    ]
    merged = results.merge_rounds(rounds)
    combined = merged["cells"]["tiny-c32"]
    assert (combined["correct_per_s"], combined["p50_ms"]) == (2000, 3.0)
    assert (combined["wrong"], combined["first_error"]) == (3, "boom")
    assert [r["tiny-c32"]["correct_per_s"] for r in merged["rounds"]] == [1000, 3000, 2000]
    failed = {"label": "farm", "status": "failed", "reason": "no start", "cells": {}}
    assert results.merge_rounds([rounds[0], failed])["status"] == "failed"


def test_table_marks_cells_not_run_and_skipped_systems() -> None:
    partial = _system("noqueue", **{"tiny-c32": {"correct_per_s": 10.0}})
    assert results.row(partial) == "| noqueue | - | - | 10 | - | 0 |"
    silent = _system("farm", **{"tiny-c1": {"responses": 0, "p50_ms": 0.0, "p99_ms": 0.0}})
    assert results.row(silent) == "| farm | - | - | - | - | 0 |"
    skipped = {"label": "Ray", "status": "skipped", "reason": "ray[serve] | missing"}
    assert results.row(skipped) == "| Ray | - | - | - | - | skipped: ray[serve] / missing |"


def test_markdown_page_has_the_header_rows_and_inprocess_line(tmp_path: Path) -> None:
    run = {"date": "today", "machine": "m", "duration_s": 3.0, "warmup_s": 1.0}
    doc = {
        "run": {**run, "wrk_threads": 2, "command": "python -m benchmarks.run"},
        "systems": [_system("farm", **{"tiny-c32": {"correct_per_s": 5.0}})],
        "inprocess": {"1": 1400.2, "32": 11000.0},
    }
    text = results.write(doc, tmp_path / "r.md", tmp_path / "r.json")
    assert results.HEADER in text
    assert "| farm | - | - | 5 | - | 0 |" in text
    assert "1,400 samples/s at batch 1, 11,000 samples/s at batch 32" in text
    assert json.loads((tmp_path / "r.json").read_text()) == doc
    assert (tmp_path / "r.md").read_text() == text


def test_parse_result_reads_the_lua_line() -> None:
    stdout = 'Running 3s test\nBENCH_RESULT {"correct": 5}\n'
    assert load.parse_result(stdout) == {"correct": 5}
    with pytest.raises(RuntimeError, match="no result line"):
        load.parse_result("Running 3s test\n")


def test_wrk_command_caps_threads_and_marks_a_missing_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(load, "wrk_binary", lambda: "wrk")
    bodies = load.BodySet(tmp_path / "b", tmp_path / "e")
    target = load.Target("http://h:1", None, "x")
    argv = load.wrk_command(target, "tiny", bodies, 1, 3.0, load.LoadOptions())
    assert argv[1:5] == ["-t", "1", "-c", "1"]
    assert argv[argv.index("--") + 3 : argv.index("--") + 5] == ["/v2/models/tiny/infer", "-"]


def test_settings_precedence_defaults_then_environment_then_set(tmp_path: Path) -> None:
    opts = farm.FarmOptions(
        settings=farm.parse_settings(["worker_concurrency=4", "log_level=INFO"])
    )
    base = {"INFERENCE_FARM_LOG_LEVEL": "ERROR", "INFERENCE_FARM_API_WORKERS": "3"}
    env = farm.farm_env(opts, tmp_path, base)
    assert env["INFERENCE_FARM_WORKER_CONCURRENCY"] == "4"
    assert env["INFERENCE_FARM_LOG_LEVEL"] == "INFO"
    assert env["INFERENCE_FARM_API_WORKERS"] == "3"
    assert env["INFERENCE_FARM_API_HOST"] == "127.0.0.1"
    assert env["INFERENCE_FARM_DATA_DIR"] == str(tmp_path)
    assert env["INFERENCE_FARM_GRPC_PORT"] not in ("0", "8001")  # a free port: the grpc lane
    with pytest.raises(SystemExit, match="NAME=VALUE"):
        farm.parse_settings(["worker_concurrency"])


def test_command_line_hides_the_key_and_rejects_unknown_systems() -> None:
    assert (
        _command(["--url", "u", "--key", "ifk_x"])
        == "python -m benchmarks.run --url u --key '(key)'"
    )
    with pytest.raises(SystemExit, match="unknown system"):
        parse_args(["--systems", "farm,triton"])


class _Answers(BaseHTTPRequestHandler):
    """Answers id 1 wrongly, id 2 with 503, every other id with its expected output."""

    expected: ClassVar[list[list[float]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        request_id = body["id"]
        data = list(self.expected[int(request_id)])
        status = 503 if request_id == "2" else 200
        if request_id == "1":
            data[3] += 0.01
        answer = {"model_name": "tiny", "id": request_id, "outputs": [{"name": "y", "data": data}]}
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_lua_checker_counts_correct_wrong_and_non_200(
    models: dict[str, Path], tmp_path: Path
) -> None:
    bodies = write_bodies(models["tiny"], tmp_path, count=4)
    lines = bodies.expected.read_text().splitlines()
    _Answers.expected = [[float(v) for v in line.split()] for line in lines]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        target = load.Target(f"http://127.0.0.1:{server.server_port}", "k", "test")
        opts = load.LoadOptions(threads=1)
        counts = load.run_wrk(target, "tiny", bodies, 1, 1, opts)
    finally:
        server.shutdown()
    assert counts["correct"] > 0
    assert counts["correct"] == pytest.approx(2 * counts["wrong"], abs=2)
    assert counts["non_200"] == pytest.approx(counts["wrong"], abs=1)
    assert counts["correct"] + counts["wrong"] + counts["non_200"] == counts["responses"]
    assert counts["first_error"].startswith("200 ")


def test_binary_bodies_carry_the_json_rows_as_raw_float32(
    models: dict[str, Path], tmp_path: Path
) -> None:
    bodies = write_bodies(models["tiny"], tmp_path, count=3)
    for line, binary in zip(
        bodies.bodies.read_text().splitlines(), bodies.binary.read_text().splitlines(), strict=True
    ):
        head, hexed = binary.split("\t")
        header, body = json.loads(head), json.loads(line)
        assert header["id"] == body["id"]
        assert header["inputs"][0]["parameters"] == {"binary_data_size": 64 * 4}
        raw = np.frombuffer(bytes.fromhex(hexed), "<f4")
        assert np.array_equal(raw, np.array(body["inputs"][0]["data"], np.float32))


def test_grpc_generator_arguments_and_command(tmp_path: Path) -> None:
    args = grpc_load.parse_args(["h:1", "tiny", "b", "e", "--connections", "2", "--channels", "8"])
    assert (args.connections, args.channels, args.duration, args.key) == (2, 2, 10.0, None)
    with pytest.raises(SystemExit):
        grpc_load.parse_args(["h:1", "tiny", "b", "e", "--connections", "0"])
    bodies = load.BodySet(tmp_path / "b", tmp_path / "e")
    target = load.Target("http://h:1", "ifk_k", "farm", grpc="127.0.0.1:9")
    argv = grpc_load.command(target, "heavy", bodies, 32, 3.0, load.LoadOptions())
    parsed = grpc_load.parse_args(argv[3:])
    assert (parsed.address, parsed.model, parsed.connections, parsed.channels) == (
        "127.0.0.1:9", "heavy", 32, 4,
    )  # fmt: skip
    assert (parsed.duration, parsed.key, parsed.bodies) == (3.0, "ifk_k", bodies.bodies)
    with pytest.raises(RuntimeError, match="no gRPC address"):
        grpc_load.command(load.Target("http://h:1", None, "farm"), "tiny", bodies, 1, 1.0,
                          load.LoadOptions())  # fmt: skip


def test_grpc_requests_checks_and_result_shape(models: dict[str, Path], tmp_path: Path) -> None:
    bodies = write_bodies(models["tiny"], tmp_path, count=2)
    requests = grpc_load.requests_from(bodies.bodies, "tiny")
    expected = grpc_load.expected_from(bodies.expected)
    session = ort.InferenceSession(str(models["tiny"]), providers=["CPUExecutionProvider"])
    x = np.frombuffer(requests[1].raw_input_contents[0], "<f4").reshape(1, 64)
    assert (requests[1].id, list(requests[1].inputs[0].shape)) == ("1", [1, 64])
    reply = pb.ModelInferResponse(model_name="tiny", id="1")
    reply.raw_output_contents.append(session.run(None, {"x": x})[0].astype("<f4").tobytes())
    assert grpc_load.check(reply, "1", expected[1], 1e-4, 1e-5)
    assert not grpc_load.check(reply, "0", expected[1], 1e-4, 1e-5)
    assert not grpc_load.check(reply, "1", expected[0], 1e-4, 1e-5)
    tally = grpc_load.Tally(correct=3, wrong=1, non_200=2, latencies=[0.001, 0.002, 0.003, 0.1])
    line = grpc_load.summary(tally, 2.0, 0.5)
    assert set(line) >= {"duration_s", "responses", "correct", "wrong", "non_200",
                         "socket_errors", "timeouts", "correct_per_s", "p50_ms", "p99_ms",
                         "mean_ms", "max_ms", "first_error", "client_cpu_s"}  # fmt: skip
    assert (line["responses"], line["correct_per_s"], line["p50_ms"]) == (6, 1.5, 2.5)
    table = results.row({"label": "g", "status": "ok", "cells": {"tiny-c32": line}})
    assert table == "| g | - | - | 2 | - | 3 |"


def test_lanes_are_named_and_checked() -> None:
    assert parse_args([]).lanes == ["json", "binary", "grpc"]
    assert parse_args(["--lanes", "grpc"]).lanes == ["grpc"]
    with pytest.raises(SystemExit, match="unknown lane"):
        parse_args(["--lanes", "grpc,soap"])
