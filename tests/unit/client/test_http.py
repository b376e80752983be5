"""The client over HTTP against a scripted local server: retries, typed errors, infer, jobs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from inference_farm import client as farm_client
from inference_farm.cli.embedded_redis import free_port
from inference_farm.client import (
    Client,
    FarmClientError,
    Forbidden,
    InvalidInput,
    JobFailed,
    NotFound,
    RateLimited,
    ResultExpired,
    Timeout,
    Unauthorized,
    Unavailable,
    error_for,
)
from inference_farm.protocol.codec import build_response, parse_request
from inference_farm.protocol.packing import pack


@dataclass
class Answer:
    """One scripted answer: status, JSON body (or raw bytes) and headers."""

    status: int = 200
    body: object = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    """One request the stub received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class Stub:
    """A local HTTP server that gives its scripted answers in turn, the last one forever."""

    def __init__(self) -> None:
        self.answers: list[Answer] = [Answer()]
        self.seen: list[Seen] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                stub.seen.append(Seen(self.command, self.path, dict(self.headers), body))
                answer = stub.answers.pop(0) if len(stub.answers) > 1 else stub.answers[0]
                raw = answer.body if isinstance(answer.body, bytes) else json.dumps(answer.body)
                raw = raw if isinstance(raw, bytes) else raw.encode()
                self.send_response(answer.status)
                headers = {"Content-Type": "application/json", **answer.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            do_GET = do_POST = do_DELETE = _answer

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def script(self, *answers: Answer) -> None:
        self.answers = list(answers)


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub()
    thread = threading.Thread(target=server.server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def unavailable(retry_after: str = "0") -> Answer:
    return Answer(503, {"error": "busy"}, {"Retry-After": retry_after})


def test_503_with_retry_after_is_retried_until_it_succeeds(stub: Stub) -> None:
    stub.script(unavailable(), unavailable(), Answer(200, {"name": "farm"}))
    with Client(stub.url, "key") as client:
        assert client.server_metadata() == {"name": "farm"}
    assert len(stub.seen) == 3
    assert stub.seen[0].headers["Authorization"] == "Bearer key"


def test_429_is_retried_too(stub: Stub) -> None:
    stub.script(Answer(429, {"error": "slow down"}, {"Retry-After": "0"}), Answer(200, []))
    with Client(stub.url) as client:
        assert client.models.list() == []
    assert len(stub.seen) == 2


def test_400_is_never_retried(stub: Stub) -> None:
    stub.script(Answer(400, {"error": "input 'x': bad"}), Answer(200, {}))
    with Client(stub.url) as client, pytest.raises(InvalidInput) as caught:
        client.server_metadata()
    assert len(stub.seen) == 1
    assert (caught.value.status, str(caught.value)) == (400, "input 'x': bad")


def test_a_zero_retry_budget_disables_retries(stub: Stub) -> None:
    stub.script(unavailable("2"), Answer(200, {}))
    with Client(stub.url, retry_budget=0) as client, pytest.raises(Unavailable) as caught:
        client.server_metadata()
    assert len(stub.seen) == 1
    assert (caught.value.retry_after, caught.value.message) == (2.0, "busy")


def test_retries_stop_when_the_budget_would_be_spent(stub: Stub) -> None:
    stub.script(unavailable("0"), unavailable("60"), Answer(200, {}))
    with Client(stub.url, retry_budget=5) as client, pytest.raises(Unavailable):
        client.server_metadata()
    assert len(stub.seen) == 2  # waiting 60s would overrun the 5s budget


def test_uploads_are_not_retried(stub: Stub, tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(b"onnx" * 10)
    stub.script(unavailable(), Answer(202, {"version": "1.0.0"}))
    with Client(stub.url) as client, pytest.raises(Unavailable):
        client.models.upload(path, "m")
    assert len(stub.seen) == 1


def test_an_unreachable_server_is_unavailable_with_status_0() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, retry_budget=0) as client, pytest.raises(Unavailable) as caught:
        client.server_metadata()
    assert caught.value.status == 0 and f"cannot reach {url}" in caught.value.message


STATUS_CLASSES = {
    400: InvalidInput, 401: Unauthorized, 403: Forbidden, 404: NotFound, 409: InvalidInput,
    413: InvalidInput, 422: InvalidInput, 429: RateLimited, 500: FarmClientError,
    502: Unavailable, 503: Unavailable, 504: Timeout,
}  # fmt: skip


@pytest.mark.parametrize("status", list(STATUS_CLASSES))
def test_each_status_raises_its_class_with_the_server_message(stub: Stub, status: int) -> None:
    body = {"code": status, "message": "what went wrong", "job_id": "j-1"}
    stub.script(Answer(status, body))
    with Client(stub.url, retry_budget=0) as client, pytest.raises(FarmClientError) as caught:
        client.request("GET", "/anything")
    assert type(caught.value) is STATUS_CLASSES[status]
    assert (caught.value.status, str(caught.value), caught.value.job_id) == (
        status, "what went wrong", "j-1"
    )  # fmt: skip
    assert type(error_for(status, "m")) is STATUS_CLASSES[status]


def test_error_prefers_error_over_message_and_takes_plain_text(stub: Stub) -> None:
    stub.script(Answer(404, {"error": "model 'ghost' not found", "message": "other"}))
    with Client(stub.url) as client, pytest.raises(NotFound, match=r"^model 'ghost' not found$"):
        client.models.get("ghost")
    stub.script(Answer(502, b"Bad Gateway from proxy", {"Content-Type": "text/plain"}))
    with Client(stub.url, retry_budget=0) as client, pytest.raises(Unavailable, match="proxy"):
        client.server_metadata()


def binary_reply(outputs: dict[str, np.ndarray]) -> Answer:
    packed = {name: pack(array, "FP32") for name, array in outputs.items()}
    body, length = build_response("tiny", "1.0.0", None, packed, None, binary_default=True)
    headers = {"Content-Type": "application/octet-stream", farm_client.HEADER_LENGTH: str(length)}
    return Answer(200, body, headers)


def test_infer_sends_binary_tensors_and_reads_binary_outputs(stub: Stub) -> None:
    y = np.array([[0.5, 1.5]], np.float32)
    stub.script(unavailable(), binary_reply({"y": y}))
    x = np.arange(4, dtype=np.float32).reshape(1, 4)
    with Client(stub.url) as client:
        outputs = client.infer("tiny", {"x": x}, version="1.0.0", timeout=2.5)
    assert list(outputs) == ["y"] and outputs["y"].tolist() == y.tolist()
    assert len(stub.seen) == 2  # the 503 was retried
    sent = stub.seen[-1]
    assert (sent.method, sent.path) == ("POST", "/v2/models/tiny/versions/1.0.0/infer")
    assert sent.headers["Content-Type"] == "application/octet-stream"
    parsed = parse_request(sent.body, int(sent.headers[farm_client.HEADER_LENGTH]))
    assert parsed.parameters == {"timeout": 2_500_000, "binary_data_output": True}
    assert parsed.inputs[0].array.tolist() == x.tolist()


def test_infer_reads_a_json_answer_and_a_504_carries_the_job_id(stub: Stub) -> None:
    body, _ = build_response("tiny", "1", None, {"y": pack(np.ones(2, np.float32), "FP32")}, None)
    stub.script(Answer(200, body), Answer(504, {"error": "no answer", "job_id": "j-9"}))
    with Client(stub.url) as client:
        assert client.infer("tiny", {"x": np.zeros(4, np.float32)})["y"].tolist() == [1.0, 1.0]
        with pytest.raises(Timeout) as caught:
            client.infer("tiny", {"x": np.zeros(4, np.float32)})
    assert (caught.value.job_id, caught.value.message) == ("j-9", "no answer")
    assert len(stub.seen) == 2  # a 504 is not retried


def job(status: str, **fields: object) -> Answer:
    return Answer(200, {"job_id": "j-1", "status": status, "error": None, **fields})


def test_job_result_polls_until_the_job_succeeds(stub: Stub) -> None:
    result = {"model_name": "tiny", "model_version": "1", "outputs": [
        {"name": "y", "datatype": "FP32", "shape": [1, 2], "data": [0.5, 1.0]}]}  # fmt: skip
    stub.script(Answer(202, {"job_id": "j-1", "status_url": "/v1/jobs/j-1"}),
                job("queued"), job("running"), job("succeeded", result=result))  # fmt: skip
    with Client(stub.url) as client:
        submitted = client.submit("tiny", {"x": np.zeros((1, 4), np.float32)}, priority=9)
        assert submitted.id == "j-1"
        assert submitted.result(timeout=10)["y"].tolist() == [[0.5, 1.0]]
    sent = json.loads(stub.seen[0].body)
    assert (sent["model"], sent["priority"], sent["inputs"][0]["datatype"]) == ("tiny", 9, "FP32")


@pytest.mark.parametrize("status", ["failed", "cancelled", "expired"])
def test_a_job_that_ends_otherwise_raises_job_failed(stub: Stub, status: str) -> None:
    stub.script(job(status, error="it broke"))
    with Client(stub.url) as client, pytest.raises(JobFailed, match="it broke") as caught:
        client.job("j-1").result()
    assert caught.value.job["status"] == status and caught.value.job_id == "j-1"


def test_an_expired_result_and_a_job_that_never_ends(stub: Stub) -> None:
    message = "the result has expired: results are kept 2 seconds"
    stub.script(job("succeeded", result=None, result_expired=True, message=message))
    with Client(stub.url) as client, pytest.raises(ResultExpired, match="kept 2 seconds"):
        client.job("j-1").result()
    stub.script(job("running"))
    with Client(stub.url) as client, pytest.raises(Timeout, match="did not end") as caught:
        client.job("j-1").result(timeout=0.3)
    assert caught.value.job_id == "j-1"
