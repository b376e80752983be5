"""The no-queue baseline: Flask with onnxruntime in-process, served by gunicorn sync workers.

`gunicorn 'benchmarks.noqueue_app:create_app()'` with BENCH_MODELS_DIR naming a folder of
`<model>.onnx` files and BENCH_INTRA_OP_THREADS the onnxruntime threads per session.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from flask import Flask, jsonify, request

from benchmarks.oip import BadRequest, decode_inputs, encode_outputs


def _sessions(folder: Path, threads: int) -> dict:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    return {
        path.stem: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for path in sorted(folder.glob("*.onnx"))
    }


def create_app() -> Flask:
    """The Flask app serving POST /v2/models/<name>/infer for every model in the folder."""
    sessions = _sessions(
        Path(os.environ["BENCH_MODELS_DIR"]), int(os.environ.get("BENCH_INTRA_OP_THREADS", "0"))
    )
    app = Flask(__name__)

    @app.get("/v2/health/live")
    def live() -> Any:
        return jsonify(live=True)

    @app.post("/v2/models/<name>/infer")
    def infer(name: str) -> Any:
        if name not in sessions:
            return jsonify(error=f"unknown model {name!r}"), 404
        body = request.get_json(force=True)
        try:
            inputs = decode_inputs(body)
        except BadRequest as error:
            return jsonify(error=str(error)), 400
        session = sessions[name]
        names = [output.name for output in session.get_outputs()]
        outputs = dict(zip(names, session.run(None, inputs), strict=True))
        return jsonify(encode_outputs(name, outputs, body.get("id")))

    return app
