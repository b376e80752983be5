"""Checking an uploaded ONNX model in a child process and reading its signature.

Run as `python -m inference_farm.runtime.inspect PATH` it is the child: it prints one JSON
object on stdout, `{"ok": true, ...}` or `{"ok": false, "reason": "..."}`.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import re
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any

import inference_farm
from inference_farm.errors import ModelRejected
from inference_farm.protocol.datatypes import NUMPY_FROM_OIP, OIP_FROM_ORT, kind_of
from inference_farm.runtime import smoke
from inference_farm.runtime.memory import release_freed_memory, rss_bytes

log = logging.getLogger(__name__)

MAX_REASON = 300
SMOKE_BUDGET_S = 30.0  # made-up inputs are tried for at most this long
MAX_DOC = 4096  # characters kept of a model's doc_string and of each metadata value
MAX_PROPS = 256  # metadata_props entries kept
ERROR = 3  # onnxruntime's log severity: only errors reach the child's stderr
_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
_LOAD_PREFIX = re.compile(r"^Load model from .*? failed:")
_SOURCE = re.compile(r"\S+\.(?:cc|cpp|h|hpp):\d+ ")


class _Rejected(Exception):
    """The child's way out with a reason for the person who uploaded the model."""


# --- the parent: run the child and turn what it says into a result or a ModelRejected ---


def child_command(path: pathlib.Path, options: dict | None = None) -> list[str]:
    """The command line of the child process that inspects path (options: see check)."""
    command = [sys.executable, "-m", "inference_farm.runtime.inspect", str(path)]
    return command + ([json.dumps(options)] if options else [])


def inspect_model(
    path: pathlib.Path,
    timeout: float,
    warmup: pathlib.Path | None = None,
    archive_root: pathlib.Path | None = None,
) -> dict:
    """Check the model at path in a child process and return its signature and costs.

    warmup: stored sample inputs to check and run; archive_root: the unpacked archive the
    model came in, inside which its external data must lie.
    """
    path = pathlib.Path(path).resolve()
    if path.stat().st_size == 0:
        raise ModelRejected("the file is empty")
    options = {"budget_s": min(SMOKE_BUDGET_S, timeout / 4)}
    if warmup is not None:
        options["warmup"] = str(warmup)
    if archive_root is not None:
        options["archive_root"] = str(pathlib.Path(archive_root).resolve())
    env = dict(os.environ)
    # The child must run this very checkout, whatever the worker's working directory is.
    root = str(pathlib.Path(inference_farm.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory(prefix="inspect-") as workdir:
        try:
            done = subprocess.run(
                child_command(path, options),
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ModelRejected(f"validation took longer than {timeout:.0f}s") from None
    return _result(done)


def _result(done: subprocess.CompletedProcess) -> dict:
    stderr = _last_line(done.stderr.decode("utf-8", "replace"))
    try:
        answer = json.loads(done.stdout)
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or "ok" not in answer:
        raise ModelRejected(_failure(done.returncode, stderr))
    if not answer.pop("ok"):
        raise ModelRejected(str(answer.get("reason") or "the model was rejected"))
    return answer


def _failure(returncode: int, stderr: str) -> str:
    detail = f": {stderr}" if stderr else ""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "unknown signal"
        hint = ", out of memory?" if -returncode == signal.SIGKILL else ""
        return (
            f"onnxruntime crashed while checking the model "
            f"(signal {-returncode}, {name}{hint}){detail}"
        )
    return f"the model check ended without a result (exit code {returncode}){detail}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return _shorten(lines[-1]) if lines else ""


def _shorten(text: str) -> str:
    """text on one line, at most MAX_REASON characters, keeping its start and its end."""
    text = " ".join(text.split())
    if len(text) <= MAX_REASON:
        return text
    half = (MAX_REASON - 3) // 2
    return f"{text[:half]} … {text[-half:]}"


def ort_message(exc: BaseException) -> str:
    """onnxruntime's message of exc on one short line, without codes, paths and C++ names."""
    text = " ".join(str(exc).split())
    text = _LOAD_PREFIX.sub("", _ORT_PREFIX.sub("", text)).strip()
    source = _SOURCE.search(text)
    if source:
        text = text[: source.start()] + _drop_signature(text[source.end() :])
    return _shorten(text.strip())


def _drop_signature(text: str) -> str:
    """text without a leading C++ function signature, as ORT_ENFORCE puts before its message."""
    opening = text.find("(")
    if opening < 0 or "::" not in text[:opening]:
        return text
    depth = 0
    for index in range(opening, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return text[index + 1 :].removeprefix(" const").strip()
    return text


# --- the child: read, load and run the model, and describe it ---


def _read_proto(path: pathlib.Path, archive_root: pathlib.Path | None) -> Any:
    import onnx

    from inference_farm.runtime import external

    if path.stat().st_size == 0:
        raise _Rejected("the file is empty")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise _Rejected(f"not a valid ONNX model: {_shorten(str(exc))}") from None
    if not model.HasField("graph"):
        raise _Rejected("not a valid ONNX model: it has no graph")
    found = external.locations(model)
    if found and archive_root is None:
        raise _Rejected(
            f"model references external data file {found[0]!r}; a model with external data "
            "must be uploaded as one archive (.zip or .tar[.gz]) holding the .onnx file and "
            "its data files"
        )
    if found:
        try:
            external.check(found, path.parent, archive_root)
        except external.UnsafeLocation as exc:
            raise _Rejected(str(exc)) from None
    return model


def _proto_facts(model: Any) -> dict:
    """Opsets, producer and which graph inputs and outputs declare a shape (a known rank)."""
    values = list(model.graph.input) + list(model.graph.output)
    return {
        "opset": {entry.domain or "ai.onnx": entry.version for entry in model.opset_import},
        "producer": " ".join(filter(None, [model.producer_name, model.producer_version])),
        "ranked": {value.name for value in values if value.type.tensor_type.HasField("shape")},
    }


def _model_info(model: Any) -> dict:
    """What the file says about itself, each text bounded."""
    props = {
        entry.key[:MAX_DOC]: _bounded(entry.value) for entry in model.metadata_props[:MAX_PROPS]
    }
    return {
        "producer_name": _bounded(model.producer_name),
        "producer_version": _bounded(model.producer_version),
        "ir_version": int(model.ir_version),
        "opset_imports": {e.domain or "ai.onnx": int(e.version) for e in model.opset_import},
        "doc_string": _bounded(model.doc_string or model.graph.doc_string),
        "metadata_props": props,
    }


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_DOC else text[: MAX_DOC - 1] + "…"


def _describe(arg: Any, ranked: set[str], role: str) -> dict:
    """One input or output as stored in the signature."""
    kind = kind_of(arg.type)
    shape = None
    if kind == "tensor" and (arg.shape or arg.name in ranked):
        shape = [dim if isinstance(dim, int) and dim >= 0 else -1 for dim in arg.shape]
    datatype = "BYTES"
    if kind == "tensor":
        datatype = OIP_FROM_ORT.get(arg.type, "")
        if datatype not in NUMPY_FROM_OIP:
            raise _Rejected(f"{role} {arg.name!r} has type {arg.type}, which the farm cannot serve")
    elif role == "input":
        article = "an" if kind[0] in "aeiou" else "a"
        raise _Rejected(f"input {arg.name!r} is {article} {kind}; only tensor inputs are supported")
    return {
        "name": arg.name,
        "datatype": datatype,
        "shape": shape,
        "kind": kind,
        "onnx_type": arg.type,
    }


def _batchable(inputs: list[dict], outputs: list[dict]) -> bool:
    """Whether dim 0 of every input and of every tensor output of known rank is free."""
    if not all(item["shape"] and item["shape"][0] == -1 for item in inputs):
        return False
    shaped = [item["shape"] for item in outputs if item["kind"] == "tensor"]
    return all(shape and shape[0] == -1 for shape in shaped if shape is not None)


def _cpu_session(source: pathlib.Path | bytes) -> Any:
    """An onnxruntime session on the CPU for a model file or serialized model."""
    import onnxruntime as ort

    from inference_farm.runtime.sessions import providers_for, session_options

    options = session_options(intra_op_threads=0)
    options.log_severity_level = ERROR
    model = str(source) if isinstance(source, pathlib.Path) else source
    try:
        return ort.InferenceSession(model, options, providers=providers_for("cpu"))
    except Exception as exc:
        raise _Rejected(f"onnxruntime cannot load the model: {ort_message(exc)}") from None


def _smoke(session: Any, inputs: list[dict], options: dict) -> smoke.Outcome:
    """Run the samples, or made-up inputs; _Rejected when a fixed-shape model cannot run."""

    def run(feeds: dict) -> list[Any]:
        return session.run(None, feeds)

    if options.get("warmup"):
        return _run_samples(run, inputs, pathlib.Path(options["warmup"]))
    if smoke.has_free_dims(inputs):
        return smoke.probe(run, inputs, float(options.get("budget_s", SMOKE_BUDGET_S)), ort_message)
    feeds = smoke.made_up_feeds(inputs, {item["name"]: item["shape"] for item in inputs})
    try:
        return smoke.Outcome(results=run(feeds), tries=1)
    except Exception as exc:
        raise _Rejected(
            f"running the model on its own declared input shapes failed: {ort_message(exc)}; "
            "if it needs real values, upload sample inputs with it (multipart field warmup)"
        ) from None


def _run_samples(run: Any, inputs: list[dict], path: pathlib.Path) -> smoke.Outcome:
    """Check the warmup samples against the inputs and run them once."""
    from inference_farm.errors import InvalidInput
    from inference_farm.protocol import samples

    try:
        found = samples.decode(path.read_bytes())
        samples.check(found, {"inputs": inputs})
    except InvalidInput as exc:
        raise _Rejected(exc.message) from None
    try:
        return smoke.Outcome(results=run(found), tries=1)
    except Exception as exc:
        raise _Rejected(f"the warmup sample failed to run: {ort_message(exc)}") from None


def _fill_ranks(outputs: list[dict], results: list[Any] | None) -> None:
    """Take unknown output ranks from the run's results, where a run succeeded."""
    if results is None:
        return
    for output, result in zip(outputs, results, strict=True):
        if output["kind"] == "tensor" and output["shape"] is None:
            # Neither the model nor onnxruntime knows the rank; the run shows it, not the sizes.
            output["shape"] = [-1] * getattr(result, "ndim", 1)


def _load_and_run(path: pathlib.Path, facts: dict, options: dict) -> dict:
    """Load path with onnxruntime on the CPU, smoke-run it, and measure the cost."""
    from inference_farm.runtime.sessions import probe_model

    # onnxruntime sets up about 10 MB of process-wide state with the first session; a worker
    # has paid that already, so a throwaway session keeps it out of the model's memory cost.
    _cpu_session(probe_model())
    release_freed_memory()
    before, started = rss_bytes(), time.perf_counter()
    session = _cpu_session(path)
    load_time_ms = (time.perf_counter() - started) * 1000
    release_freed_memory()
    loaded = rss_bytes()
    inputs = [_describe(arg, facts["ranked"], "input") for arg in session.get_inputs()]
    outputs = [_describe(arg, facts["ranked"], "output") for arg in session.get_outputs()]
    outcome = _smoke(session, inputs, options)
    _fill_ranks(outputs, outcome.results)
    release_freed_memory()  # as the worker's cache does: count what the session holds
    # A run that failed may leave garbage behind: then the figure is the load's alone.
    after = rss_bytes() if outcome.ran else loaded
    signature = {"inputs": inputs, "outputs": outputs, **facts}
    del signature["ranked"]
    return {
        "signature": signature,
        "batchable": _batchable(inputs, outputs),
        "load_time_ms": load_time_ms,
        "memory_bytes": max(0, after - before),
        "size_bytes": _files_size(path, options),
        "warnings": outcome.warnings,
    }


def _files_size(path: pathlib.Path, options: dict) -> int:
    """The model file's size, or the unpacked archive's whole size."""
    root = options.get("archive_root")
    if not root:
        return path.stat().st_size
    return sum(item.stat().st_size for item in pathlib.Path(root).rglob("*") if item.is_file())


def check(path: pathlib.Path, options: dict | None = None) -> dict:
    """The child's whole check of path in this process; raises _Rejected with a reason.

    options: budget_s (made-up inputs), warmup (a stored samples file), archive_root.
    """
    import onnxruntime as ort

    options = options or {}
    ort.set_default_logger_severity(ERROR)
    root = options.get("archive_root")
    model = _read_proto(path, pathlib.Path(root) if root else None)
    facts, info = _proto_facts(model), _model_info(model)
    del model  # the parsed copy must not count towards the session's memory
    return {**_load_and_run(path, facts, options), "model_info": info}


def main(argv: list[str]) -> int:
    """Entry point of the child: check argv[0] and print one JSON object on stdout."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # a stray print from native code must not corrupt the JSON answer
    try:
        options = json.loads(argv[1]) if len(argv) > 1 else {}
        answer = {"ok": True, **check(pathlib.Path(argv[0]), options)}
    except _Rejected as exc:
        answer = {"ok": False, "reason": str(exc)}
    except Exception as exc:
        log.exception("checking %s failed", argv[0])
        answer = {"ok": False, "reason": f"checking the model failed: {_shorten(repr(exc))}"}
    out.write(json.dumps(answer) + "\n")
    out.flush()
    return 0


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m inference_farm.runtime.inspect PATH [OPTIONS_JSON]")
    sys.exit(main(sys.argv[1:]))
