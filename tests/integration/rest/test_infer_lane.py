"""Sync infer through the real API server, whose event loop answers it: the same answers,
errors, headers and metrics as the Flask view gives under the test client."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from flask.testing import FlaskClient

from tests import onnx_models
from tests.integration.conftest import running_api
from tests.integration.helpers import (
    BAD_BODIES,
    GOOD,
    expected,
    model_bytes,
    new_key,
    settled,
    upload,
)

ROUTE = "/v2/models/<name>/infer"


@pytest.fixture
def tiny(api: FlaskClient, worker: subprocess.Popen) -> bytes:
    """A ready tiny_mlp called 'tiny', served by the worker; its bytes."""
    content = model_bytes(onnx_models.tiny_mlp())
    assert upload(api, "tiny", content).status_code == 202
    assert settled(api, "tiny", "1.0.0")["status"] == "ready"
    return content


@pytest.fixture
def lane(api_url: str, admin_key: str) -> Iterator[httpx.Client]:
    """An HTTP client of the real API, sending an admin key."""
    with httpx.Client(
        base_url=api_url, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30
    ) as client:
        yield client


def test_answers_match_onnxruntime_one_by_one_and_together(lane: httpx.Client, tiny: bytes) -> None:
    rng = np.random.default_rng(4)
    arrays = [
        rng.standard_normal((int(rng.integers(1, 4)), 4)).astype(np.float32) for _ in range(24)
    ]

    def post(index: int) -> httpx.Response:
        array = arrays[index]
        tensor = {"name": "x", "datatype": "FP32", "shape": list(array.shape)}
        body = {"id": str(index), "inputs": [{**tensor, "data": array.ravel().tolist()}]}
        return lane.post("/v2/models/tiny/versions/1.0.0/infer", json=body)

    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(post, range(len(arrays))))
    for index, (array, answer) in enumerate(zip(arrays, answers, strict=True)):
        assert answer.status_code == 200, answer.text
        document = answer.json()
        assert (document["id"], document["model_version"]) == (str(index), "1.0.0")
        [out] = document["outputs"]
        got = np.array(out["data"], np.float32).reshape(out["shape"])
        np.testing.assert_allclose(got, expected(tiny, {"x": array})[0], rtol=1e-5, atol=1e-6)


def test_bad_requests_get_400_and_the_farm_keeps_serving(lane: httpx.Client, tiny: bytes) -> None:
    for case, (body, fragment) in BAD_BODIES.items():
        answer = lane.post("/v2/models/tiny/infer", json=body)
        assert answer.status_code == 400, (case, answer.text)
        assert set(answer.json()) == {"error"} and fragment in answer.json()["error"], case
        assert answer.headers["content-type"] == "application/json"
    malformed = lane.post("/v2/models/tiny/infer", content=b'{"inputs": [')
    assert malformed.status_code == 400 and "not valid JSON" in malformed.json()["error"]
    assert lane.post("/v2/models/tiny/infer", json={"inputs": [GOOD]}).status_code == 200


def test_refusals_keys_rates_and_unknown_models(
    api_url: str, farm_database: str, lane: httpx.Client, tiny: bytes
) -> None:
    body = {"inputs": [GOOD]}
    path = api_url + "/v2/models/tiny/infer"
    bare = httpx.post(path, json=body)
    assert bare.status_code == 401 and "API key is required" in bare.json()["error"]
    assert bare.headers["www-authenticate"].startswith("Bearer")
    wrong = httpx.post(path, json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "unknown" in wrong.json()["error"]
    reader, _ = new_key(farm_database, ["models:read"])
    refused = httpx.post(path, json=body, headers={"Authorization": f"Bearer {reader}"})
    assert refused.status_code == 403 and "'infer'" in refused.json()["error"]
    other, _ = new_key(farm_database, ["infer"], models=["other"])
    refused = httpx.post(path, json=body, headers={"Authorization": f"Bearer {other}"})
    assert refused.status_code == 403 and "'tiny'" in refused.json()["error"]
    allowed, _ = new_key(farm_database, ["infer"], models=["tiny"])
    assert httpx.post(path, json=body, headers={"Authorization": f"Bearer {allowed}"}).is_success
    # A key with a rate limit is checked off the event loop, against Redis.
    limited, _ = new_key(farm_database, ["infer"], rate_per_second=1, burst=2)
    headers = {"Authorization": f"Bearer {limited}"}
    statuses = [httpx.post(path, json=body, headers=headers) for _ in range(4)]
    assert [s.status_code for s in statuses[:2]] == [200, 200]
    assert statuses[-1].status_code == 429 and int(statuses[-1].headers["retry-after"]) >= 1
    assert lane.post("/v2/models/ghost/infer", json=body).status_code == 404
    answer = lane.post("/v2/models/tiny/versions/9.9.9/infer", json=body)
    assert answer.status_code == 404 and "9.9.9" in answer.json()["error"]
    wrong_method = lane.get("/v2/models/tiny/infer")
    assert (wrong_method.status_code, wrong_method.headers["allow"]) == (405, "POST")


def _count(metrics: str, status: str, model: str) -> float:
    wanted = f'model="{model}",route="{ROUTE}",status="{status}"'
    total = 0.0
    for line in metrics.splitlines():
        if line.startswith("inference_farm_http_requests_total{") and wanted in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_request_ids_and_metrics(lane: httpx.Client, tiny: bytes) -> None:
    given = lane.post(
        "/v2/models/tiny/infer", json={"inputs": [GOOD]}, headers={"X-Request-ID": "abc-123"}
    )
    assert given.headers["x-request-id"] == "abc-123"
    made = lane.post("/v2/models/tiny/infer", json={"inputs": [GOOD]})
    assert len(made.headers["x-request-id"]) == 32
    unsafe = lane.post("/v2/models/tiny/infer", json={"x": 1}, headers={"X-Request-ID": "a b"})
    assert unsafe.status_code == 400 and unsafe.headers["x-request-id"] != "a b"
    before = lane.get("/metrics").text
    for _ in range(3):
        assert lane.post("/v2/models/tiny/infer", json={"inputs": [GOOD]}).status_code == 200
    assert lane.post("/v2/models/tiny/infer", json={"inputs": "x"}).status_code == 400
    assert lane.post("/v2/models/ghost/infer", json={"inputs": [GOOD]}).status_code == 404
    after = lane.get("/metrics").text
    assert _count(after, "200", "tiny") - _count(before, "200", "tiny") == 3
    assert _count(after, "400", "tiny") - _count(before, "400", "tiny") == 1
    assert _count(after, "404", "") - _count(before, "404", "") == 1  # a guessed name: no label


@pytest.fixture
def small_api(farm_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A real API whose request bodies may hold at most 200 bytes."""
    env = {**farm_env, "INFERENCE_FARM_MAX_REQUEST_BYTES": "200"}
    with running_api(env, tmp_path / "small-api.log") as url:
        yield url


def test_a_body_over_the_limit_gets_413(small_api: str, admin_key: str, tiny: bytes) -> None:
    headers = {"Authorization": f"Bearer {admin_key}"}
    big = {"inputs": [{**GOOD, "shape": [20, 4], "data": [0.5] * 80}]}
    answer = httpx.post(small_api + "/v2/models/tiny/infer", json=big, headers=headers)
    assert answer.status_code == 413 and "200 bytes" in answer.json()["error"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
        yield b'{"inputs": [{"name": "x", "datatype": "FP32", "shape": [20, 4], "data": ['
        yield b"0.5, " * 79 + b"0.5]}]}"

    streamed = httpx.post(small_api + "/v2/models/tiny/infer", content=chunks(), headers=headers)
    assert streamed.status_code == 413
    small = httpx.post(
        small_api + "/v2/models/tiny/infer", json={"inputs": [GOOD]}, headers=headers
    )
    assert small.status_code == 200
