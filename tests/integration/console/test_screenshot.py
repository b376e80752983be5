"""The README's pictures of the console, taken from a real farm under a little load.

Each run checks that the pages render to a real picture; with INFERENCE_FARM_TEST_SCREENSHOTS
set to a folder (docs/), it also writes them there, for the README.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.console.conftest import Console
from tests.integration.helpers import model_bytes, post_version, settled_http
from tests.onnx_models import tiny_mlp

pytestmark = pytest.mark.integration
BODY = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
PNG = b"\x89PNG\r\n\x1a\n"


def _load(console: Console, stop: threading.Event) -> None:
    headers = {"Authorization": f"Bearer {console.admin_key}"}
    with httpx.Client(base_url=console.url, headers=headers, timeout=30) as http:
        while not stop.is_set():
            http.post("/v2/models/classifier/infer", json=BODY)
            time.sleep(0.01)


def _shoot(console: Console, name: str, folder: Path) -> Path:
    path = folder / f"console-{name}.png"
    console.page.screenshot(path=str(path))
    target = os.environ.get("INFERENCE_FARM_TEST_SCREENSHOTS")
    if target:
        Path(target, path.name).write_bytes(path.read_bytes())
    return path


def test_the_overview_and_models_pages_render(console: Console, tmp_path: Path) -> None:
    description = "Gemm + Relu, 4 features in, 2 scores out"
    response = post_version(console.url, console.admin_key, "classifier",
                            model_bytes(tiny_mlp()), description=description)  # fmt: skip
    assert response.status_code == 202, response.text
    assert settled_http(console.url, console.admin_key, "classifier", "1.0.0")["status"] == "ready"
    stop = threading.Event()
    load = threading.Thread(target=_load, args=(console, stop), daemon=True)
    load.start()
    try:
        console.open()
        console.sign_in()
        console.page.wait_for_selector(".overview [data-metric=p99] svg polyline")
        console.page.wait_for_function(
            "document.querySelectorAll('.overview [data-metric=rps] svg polyline').length > 0"
        )
        shots = [_shoot(console, "overview", tmp_path)]
        console.go("models")
        console.page.wait_for_selector("main :text('classifier')")
        shots.append(_shoot(console, "models", tmp_path))
    finally:
        stop.set()
        load.join(30)
    for shot in shots:
        data = shot.read_bytes()
        assert data.startswith(PNG) and len(data) > 20_000, shot.name
    assert console.errors == []
