"""Hostile clients against the real API server: thousands of silent, slow and idle
connections are dropped at their deadlines and their descriptors come back, while health
and infer keep answering; past the connection limit, requests get the farm's JSON 503."""

from __future__ import annotations

import contextlib
import resource
import selectors
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psutil
import pytest
from flask.testing import FlaskClient

from tests import onnx_models
from tests.integration.conftest import running_api
from tests.integration.helpers import GOOD, model_bytes, settled, upload
from tests.services import wait_for

# Connections of each kind: nothing sent; a request line and one header; a body at a few
# bytes a second; a keep-alive connection left idle after one answered request.
KINDS = {"silent": 400, "slow_headers": 600, "slow_body": 500, "idle": 500}
DEADLINE_S = 1  # header, body and keep-alive deadlines of the hostile_api
WAIT_S = 20  # bound on every wait here: several times what the deadlines need


def _env(farm_env: dict[str, str], **settings: str) -> dict[str, str]:
    return {**farm_env, **{f"INFERENCE_FARM_{k.upper()}": v for k, v in settings.items()}}


@pytest.fixture
def hostile_api(farm_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A real API with one-second deadlines and room for every hostile connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = sum(KINDS.values()) + 512  # this process holds the client ends, the API inherits
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"the descriptor limit {hard} is below the {needed} this test needs")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    second = str(DEADLINE_S)
    env = _env(farm_env, api_header_timeout=second, api_body_timeout=second,
               api_body_min_rate="1000", api_keepalive_timeout=second,
               api_max_connections="4096")  # fmt: skip
    with running_api(env, tmp_path / "api.log") as url:
        yield url


def _server_fds(url: str) -> int:
    """Open descriptors over the processes of the API listening at url (master and workers)."""
    port = urlsplit(url).port
    listening = [
        child for child in psutil.Process().children(recursive=True)
        if any(c.laddr.port == port and c.status == psutil.CONN_LISTEN
               for c in _connections(child))
    ]  # fmt: skip
    assert listening, f"no process listens on {port}"
    return sum(process.num_fds() for process in listening)


def _connections(process: psutil.Process) -> list:
    try:
        return process.net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return []


def _opening(kind: str, key: str) -> bytes:
    if kind == "silent":
        return b""
    if kind == "slow_headers":
        return b"GET /v2/health/live HTTP/1.1\r\nHost: farm\r\n"
    if kind == "idle":
        return b"GET /v2/health/live HTTP/1.1\r\nHost: farm\r\n\r\n"
    head = ["POST /v2/models/tiny/infer HTTP/1.1", "Host: farm", "Content-Type: application/json",
            f"Authorization: Bearer {key}", "Content-Length: 100000"]  # fmt: skip
    return "\r\n".join([*head, "", "{"]).encode()


class Crowd:
    """Many client sockets on one selector: what each received, and which the server closed."""

    def __init__(self, url: str, key: str) -> None:
        self.address = (urlsplit(url).hostname, urlsplit(url).port)
        self.selector = selectors.DefaultSelector()
        self.received: dict[socket.socket, bytearray] = {}
        self.kind: dict[socket.socket, str] = {}
        self.closed: set[socket.socket] = set()
        self.key = key

    def open(self, kind: str, count: int) -> None:
        """Open count connections of kind and send their opening bytes."""
        for _ in range(count):
            sock = socket.create_connection(self.address, timeout=10)
            sock.sendall(_opening(kind, self.key))
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ)
            self.received[sock], self.kind[sock] = bytearray(), kind

    def poll(self, seconds: float) -> None:
        """Read what arrives for seconds; note each connection the server closes."""
        for key, _ in self.selector.select(seconds):
            sock = key.fileobj
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if data:
                self.received[sock] += data
            else:
                self.selector.unregister(sock)
                self.closed.add(sock)

    def trickle(self) -> None:
        """One more byte of body on every slow body still open."""
        for sock, kind in self.kind.items():
            if kind == "slow_body" and sock not in self.closed:
                with contextlib.suppress(OSError):  # reset: poll() notes it
                    sock.send(b" ")

    def open_of(self, kind: str) -> int:
        """Connections of kind the server has not closed yet."""
        return sum(1 for s, k in self.kind.items() if k == kind and s not in self.closed)

    def close(self) -> None:
        """Close every client socket."""
        for sock in self.received:
            sock.close()
        self.selector.close()


@pytest.fixture
def tiny(api: FlaskClient, worker: subprocess.Popen) -> None:
    """A ready tiny_mlp called 'tiny', served by the worker."""
    assert upload(api, "tiny", model_bytes(onnx_models.tiny_mlp())).status_code == 202
    assert settled(api, "tiny", "1.0.0")["status"] == "ready"


def test_slow_and_idle_connections_are_dropped_while_the_api_keeps_answering(
    hostile_api: str, admin_key: str, tiny: None
) -> None:
    farm = httpx.Client(base_url=hostile_api, headers={"Authorization": f"Bearer {admin_key}"},
                        timeout=10)  # fmt: skip
    statuses: list[tuple[int, int]] = []

    def answers() -> None:
        health = farm.get("/v2/health/live")
        infer = farm.post("/v2/models/tiny/infer", json={"inputs": [GOOD]})
        statuses.append((health.status_code, infer.status_code))

    answers()  # every pool the API keeps is open before the baseline
    baseline = _server_fds(hostile_api)
    crowd = Crowd(hostile_api, admin_key)
    try:
        for kind, count in KINDS.items():
            crowd.open(kind, count)
        peak = _server_fds(hostile_api)
        deadline = time.monotonic() + WAIT_S
        while len(crowd.closed) < len(crowd.received) and time.monotonic() < deadline:
            crowd.poll(0.3)
            crowd.trickle()
            answers()
        still_open = {kind: crowd.open_of(kind) for kind in KINDS}
        assert not any(still_open.values()), f"not closed by the server: {still_open}"
        replies = {kind: set() for kind in KINDS}
        for sock, kind in crowd.kind.items():
            replies[kind].add(bytes(crowd.received[sock][:12]))
    finally:
        crowd.close()
    assert replies["idle"] == {b"HTTP/1.1 200"}  # its answer, then a close after keep-alive
    for kind in ("silent", "slow_headers", "slow_body"):
        assert replies[kind] == {b"HTTP/1.1 408"}, kind
    assert peak > baseline + sum(KINDS.values()) // 4  # the API did hold them
    assert wait_for(lambda: _server_fds(hostile_api) <= baseline + 16, WAIT_S), (
        f"{_server_fds(hostile_api)} descriptors open, {baseline} before"
    )
    answers()
    farm.close()
    assert len(statuses) > 2 and set(statuses) == {(200, 200)}, statuses


def test_past_the_connection_limit_requests_get_a_json_503_with_retry_after(
    farm_env: dict[str, str], tmp_path: Path
) -> None:
    limit = 8
    env = _env(farm_env, api_max_connections=str(limit))
    with running_api(env, tmp_path / "api.log") as url:
        crowd = Crowd(url, "")
        crowd.open("silent", limit)
        try:
            assert wait_for(lambda: httpx.get(url + "/v2/health/live").status_code == 503, WAIT_S)
            v2, v1 = httpx.get(url + "/v2/health/live"), httpx.get(url + "/v1/models")
        finally:
            crowd.close()
        assert wait_for(lambda: httpx.get(url + "/v2/health/live").status_code == 200, WAIT_S)
    message = f"the API holds its limit of {limit} connections; retry after 1 s"
    assert v2.json() == {"error": message}
    assert (v1.status_code, v1.json()) == (503, {
        "code": 503, "status": "Service Unavailable", "message": message, "error": message,
    })  # fmt: skip
    for answer in (v2, v1):
        assert answer.headers["retry-after"] == "1"
        assert answer.headers["content-type"] == "application/json"
