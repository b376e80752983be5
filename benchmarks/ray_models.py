"""The Ray Serve deployment of the peer: every model in one replica, batched per model.

Imported only by ray_serve_app.py, in the Ray venv, after Serve's settings are in place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from benchmarks.oip import BadRequest, decode_inputs, encode_outputs

SERVER = "ray-serve-benchmark"  # what GET answers, so a probe knows it found this app


@serve.deployment(num_replicas=1, max_ongoing_requests=256)
class Models:
    """POST /v2/models/{tiny,heavy}/infer, each model behind its own @serve.batch."""

    def __init__(
        self,
        models_dir: str,
        max_batch_size: int,
        batch_wait_timeout_s: float,
        intra_op_threads: int = 0,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads  # 0: onnxruntime decides
        self.sessions = {
            path.stem: ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"]
            )
            for path in Path(models_dir).glob("*.onnx")
        }
        for method in (self.run_tiny, self.run_heavy):
            method.set_max_batch_size(max_batch_size)
            method.set_batch_wait_timeout_s(batch_wait_timeout_s)

    def run(self, name: str, xs: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """Run xs stacked along dim 0 in one call; the outputs of each, split back."""
        session = self.sessions[name]
        out = session.run(None, {session.get_inputs()[0].name: np.concatenate(xs)})
        names = [output.name for output in session.get_outputs()]
        bounds = np.cumsum([len(x) for x in xs])[:-1]
        parts = [np.split(array, bounds) for array in out]
        return [dict(zip(names, row, strict=True)) for row in zip(*parts, strict=True)]

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def run_tiny(self, xs: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        return self.run("tiny", xs)

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.002)
    async def run_heavy(self, xs: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        return self.run("heavy", xs)

    async def __call__(self, request: Request) -> Any:
        if request.method == "GET":
            return JSONResponse({"live": True, "server": SERVER})
        parts = request.url.path.strip("/").split("/")
        name = parts[2] if len(parts) == 4 and parts[3] == "infer" else ""
        if name not in self.sessions:
            return JSONResponse({"error": f"no model at {request.url.path}"}, 404)
        body = await request.json()
        try:
            x = next(iter(decode_inputs(body).values()))
        except BadRequest as error:
            return JSONResponse({"error": str(error)}, 400)
        batched = self.run_tiny if name == "tiny" else self.run_heavy
        return JSONResponse(encode_outputs(name, await batched(x), body.get("id")))
