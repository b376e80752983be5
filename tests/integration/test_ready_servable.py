"""Ready means servable: the moment a version reads ready, the next infer succeeds, no retry."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import numpy as np
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests import onnx_models
from tests.integration.conftest import running_api
from tests.integration.helpers import Bearer
from tests.services import wait_for

MODELS = 30


def _upload(url: str, key: str, name: str, content: bytes) -> str:
    files = {"file": ("model.onnx", content)}
    headers = {"Authorization": f"Bearer {key}"}
    response = httpx.post(f"{url}/v1/models/{name}/versions", files=files, headers=headers)
    assert response.status_code == 202, response.text
    return response.json()["version"]


def _infer(client: triton.InferenceServerClient, name: str) -> np.ndarray:
    tensor = triton.InferInput("x", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 4), np.float32))
    return client.infer(name, [tensor]).as_numpy("y")


def test_every_model_serves_the_moment_it_is_ready(
    farm_env: dict[str, str], admin_key: str, worker: subprocess.Popen, tmp_path: Path
) -> None:
    # Two API processes: whichever one answers "ready", the other must serve at once too.
    env = {**farm_env, "INFERENCE_FARM_API_WORKERS": "2"}
    with running_api(env, tmp_path / "api.log") as url:
        client = triton.InferenceServerClient(url.removeprefix("http://"))
        client.register_plugin(Bearer(admin_key))
        answered, refused = 0, []
        for index in range(MODELS):
            name = f"m{index}"
            version = _upload(
                url, admin_key, name, onnx_models.tiny_mlp(seed=index).SerializeToString()
            )
            assert wait_for(lambda n=name, v=version: client.is_model_ready(n, v), 90, 0.02)
            try:
                _infer(client, name)  # once, the moment it is ready: Triton's clients never retry
                answered += 1
            except InferenceServerException as exc:
                refused.append(f"{name}: {exc}")
        assert (answered, refused) == (MODELS, [])
