"""The console's Playground page in a real browser, against a real API and worker: inputs from
JSON, random data and NumPy files, outputs equal to onnxruntime's, and the request to copy."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest
from onnx import TensorProto, helper

from tests import onnx_models
from tests.integration.console.conftest import Console, axe_violations
from tests.integration.helpers import model_bytes, post_version, settled_http

pytestmark = pytest.mark.integration
TINY = model_bytes(onnx_models.tiny_mlp())
X = [[0.1, 0.2, 0.3, 0.4], [-1.0, 2.5, 0.5, 3.0]]


def ready(console: Console, name: str, content: bytes) -> None:
    """Upload content as model name through REST and wait until it is ready."""
    response = post_version(console.url, console.admin_key, name, content)
    assert response.status_code == 202, response.text
    assert settled_http(console.url, console.admin_key, name, "1.0.0")["status"] == "ready"


def expected(x: np.ndarray) -> np.ndarray:
    """tiny_mlp's y for x, from onnxruntime in this process."""
    session = onnxruntime.InferenceSession(TINY, providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0]


def open_model(console: Console, name: str) -> None:
    """Sign in on the playground and pick model name."""
    console.open("#/playground")
    console.sign_in()
    console.page.wait_for_selector(f"#pg-model option[value={name}]", state="attached")
    console.page.select_option("#pg-model", name)
    console.page.wait_for_selector("#pg-run")


def run(console: Console) -> Any:
    """Press Run; the page once its (new) answer is shown."""
    before = console.page.evaluate("document.getElementById('pg-request-id')?.textContent || ''")
    console.page.click("#pg-run")
    console.page.wait_for_function(
        "before => document.getElementById('pg-error') ||"
        " (document.getElementById('pg-request-id')?.textContent || before) !== before",
        arg=before,
    )
    assert console.page.query_selector("#pg-error") is None, console.page.inner_text("#pg-error")
    return console.page


def shown(page: Any, output: str) -> tuple[list[int], np.ndarray]:
    """The shape and the values the page shows for output."""
    values = json.loads(page.inner_text(f"code.pg-values[data-output={output}]"))
    row = page.locator("table[aria-label=Outputs] tr", has=page.locator(f"[data-output={output}]"))
    shape = json.loads(row.locator("td").nth(2).inner_text())
    return shape, np.array(values, np.float32).reshape(shape)


def copied(page: Any, kind: str) -> str:
    """Press a copy button: the text it shows, which is also what reached the clipboard."""
    page.click(f"button[data-copy={kind}]")
    page.wait_for_selector(f"#pg-snippet[data-kind={kind}]")
    text = page.inner_text(f"#pg-snippet[data-kind={kind}]")
    assert page.evaluate("navigator.clipboard.readText()") == text
    return text


def run_snippet(console: Console, kind: str, text: str) -> str:
    """Run a copied request as a user would, with the key in the environment; its output."""
    env = {**os.environ, "INFERENCE_FARM_API_KEY": console.admin_key}
    command = ["bash", "-c", text] if kind == "curl" else [sys.executable, "-c", text]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_json_inputs_give_what_onnxruntime_gives_and_the_request_copies(
    console: Console,
) -> None:
    ready(console, "tiny", TINY)
    console.page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    open_model(console, "tiny")
    console.page.fill("textarea[data-input=x]", json.dumps(X))
    page = run(console)
    shape, values = shown(page, "y")
    want = expected(np.array(X, np.float32))
    assert shape == [2, 2]
    np.testing.assert_allclose(values, want, atol=1e-5)
    assert page.inner_text("#pg-model-version") == "1.0.0"
    request_id = page.inner_text("#pg-request-id")
    assert re.fullmatch(r"[A-Za-z0-9._:-]{8,64}", request_id), request_id
    assert re.fullmatch(r"[0-9.]+ m?s", page.inner_text("#pg-latency"))

    curl = copied(page, "curl")
    assert f"{console.url}/v2/models/tiny/infer" in curl
    assert console.admin_key not in curl and "$INFERENCE_FARM_API_KEY" in curl
    answer = json.loads(run_snippet(console, "curl", curl))
    np.testing.assert_allclose(answer["outputs"][0]["data"], want.ravel(), atol=1e-5)
    for kind in ("python", "triton"):
        text = copied(page, kind)
        assert console.admin_key not in text
        printed = run_snippet(console, kind, text)
        assert printed.startswith("y [["), printed
        numbers = [float(n) for n in re.findall(r"-?[0-9]+\.?[0-9]*(?:e[-+]?[0-9]+)?", printed)]
        np.testing.assert_allclose(numbers, want.ravel(), atol=1e-5)

    assert axe_violations(page) == []
    assert console.errors == []


def test_random_data_and_numpy_files_run(console: Console, tmp_path: Path) -> None:
    ready(console, "tiny", TINY)
    open_model(console, "tiny")
    page = console.page
    page.check("input[type=radio][data-input=x][value=random]")
    page.fill("input.pg-dim[data-input=x]", "3")
    shape, values = shown(run(console), "y")
    assert shape == [3, 2] and values.shape == (3, 2)

    x = np.asfortranarray(np.arange(8, dtype=np.float64).reshape(2, 4) / 7)
    np.save(tmp_path / "x.npy", x)  # float64 and Fortran order, read as the input's FP32
    np.savez(tmp_path / "stored.npz", other=np.zeros(1), x=(x + 1).astype(np.float32))
    np.savez_compressed(tmp_path / "deflated.npz", x=(x * 3).astype(np.float32))
    page.check("input[type=radio][data-input=x][value=file]")
    for name, array in (("x.npy", x), ("stored.npz", x + 1), ("deflated.npz", x * 3)):
        page.set_input_files("input[type=file][data-input=x]", str(tmp_path / name))
        shape, values = shown(run(console), "y")
        assert shape == [2, 2], name
        np.testing.assert_allclose(values, expected(array.astype(np.float32)), atol=1e-5)
    assert console.errors == []


def image_model() -> bytes:
    """x FP32 [1, 3, 16, 12] -> Identity -> y: an image-shaped output."""
    shape = [1, 3, 16, 12]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "image",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
    )
    return model_bytes(onnx_models.model_of(graph))


def test_an_image_shaped_output_is_drawn(console: Console) -> None:
    ready(console, "picture", image_model())
    open_model(console, "picture")
    console.page.check("input[type=radio][data-input=x][value=random]")
    page = run(console)
    canvas = page.wait_for_selector("canvas.pg-image[data-output=y]")
    assert (canvas.get_attribute("width"), canvas.get_attribute("height")) == ("12", "16")
    lit = page.evaluate(
        """() => { const c = document.querySelector("canvas.pg-image");
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        return new Set(d.filter((_, i) => i % 4 === 0)).size; }"""
    )
    assert lit > 8  # random values drew many shades, not a blank canvas
    assert axe_violations(page) == []
    assert console.errors == []
