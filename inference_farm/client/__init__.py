"""Python client of the farm's REST API (and GrpcClient of its gRPC one); imports only numpy,
httpx and the standard library (grpcio on first use of GrpcClient)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from inference_farm.client import tensors
from inference_farm.client.errors import (
    RETRIED,
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
    backoff,
    error_for,
    error_of,
)
from inference_farm.client.grpc_client import GrpcClient

__all__ = [
    "Client", "FarmClientError", "Forbidden", "GrpcClient", "InvalidInput", "Job", "JobFailed",
    "NotFound", "RateLimited", "ResultExpired", "Timeout", "Unauthorized", "Unavailable",
    "error_for",
]  # fmt: skip
DEFAULT_URL = "http://127.0.0.1:8000"
HEADER_LENGTH = "Inference-Header-Content-Length"
# Slack past a request's own deadline, so that the server's 504 (with its job id) arrives first.
DEADLINE_SLACK = 5.0
FINISHED = ("succeeded", "failed", "cancelled", "expired")


class Models:
    """Model management through /v1/models and the /v2 repository extension."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def upload(
        self, path: str | Path, name: str, version: str | None = None, description: str = "",
        progress: Callable[[int], None] | None = None, *, warmup: str | Path | None = None,
        model_file: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Upload an .onnx file (or a .zip / .tar[.gz] of one with its external data) as a
        new version; warmup: sample inputs (.npz, or an OIP JSON request) it is checked and
        warmed with; model_file: the .onnx member of an archive holding several;
        progress(n) is called per chunk sent."""
        form = {"description": description, **({"version": version} if version else {})}
        if model_file:
            form["model_file"] = model_file
        with open(path, "rb") as handle:
            files: dict[str, Any] = {
                "file": (Path(path).name, tensors.ProgressReader(handle, progress))
            }
            if warmup is not None:
                files["warmup"] = (Path(warmup).name, Path(warmup).read_bytes())
            return self._client.request(
                "POST", f"/v1/models/{name}/versions", data=form, files=files, timeout=None,
                retry=False,
            )  # fmt: skip

    def wait(self, name: str, version: str, timeout: float = 300.0) -> dict[str, Any]:
        """The version once validation has ended (ready or failed)."""
        deadline = time.monotonic() + timeout
        while True:
            record = self.get_version(name, version)
            if record["status"] != "pending" or time.monotonic() > deadline:
                return record
            time.sleep(0.3)

    def list(self) -> list[dict[str, Any]]:
        """Every model with its versions."""
        return self._client.request("GET", "/v1/models")

    def get(self, name: str) -> dict[str, Any]:
        """One model with its versions."""
        return self._client.request("GET", f"/v1/models/{name}")

    def get_version(self, name: str, version: str) -> dict[str, Any]:
        """One version: status, signature, validation outcome."""
        return self._client.request("GET", f"/v1/models/{name}/versions/{version}")

    def delete(self, name: str, version: str | None = None) -> dict[str, Any] | None:
        """Delete a model, or retire one of its versions."""
        path = f"/v1/models/{name}" + (f"/versions/{version}" if version else "")
        return self._client.request("DELETE", path)

    def set_default(self, name: str, version: str | None) -> dict[str, Any]:
        """Pin the version served by default; None unpins."""
        return self._client.request(
            "PATCH", f"/v1/models/{name}", json={"default_version": version}
        )

    def load(self, name: str) -> None:
        """Warm the model on the workers that serve it."""
        self._client.request("POST", f"/v2/repository/models/{name}/load")

    def unload(self, name: str) -> None:
        """Evict the model from every worker."""
        self._client.request("POST", f"/v2/repository/models/{name}/unload")


class Keys:
    """API keys through /v1/keys (scope keys:admin)."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def create(
        self, name: str, scopes: list[str], models: list[str] | None = None,
        expires_in_days: int | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Create a key; the answer holds its secret, shown this once only."""
        fields = {"models": models, "expires_in_days": expires_in_days}
        body = {
            "name": name,
            "scopes": scopes,
            **{k: v for k, v in fields.items() if v is not None},
        }
        return self._client.request("POST", "/v1/keys", json=body)

    def list(self) -> list[dict[str, Any]]:
        """Every key, without secrets."""
        return self._client.request("GET", "/v1/keys")

    def me(self) -> dict[str, Any]:
        """The calling key: name, prefix, scopes, models, expiry and limits; never its secret."""
        return self._client.request("GET", "/v1/keys/me")

    def revoke(self, key_id: int) -> dict[str, Any]:
        """Revoke a key: it stops working at once; the key as it now is."""
        return self._client.request("DELETE", f"/v1/keys/{key_id}")


class Job:
    """A job submitted through /v1/jobs."""

    def __init__(self, client: Client, job_id: str, batch_id: str | None = None) -> None:
        self._client, self.id, self.batch_id = client, job_id, batch_id

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    def info(self) -> dict[str, Any]:
        """The job as the API shows it: status, timings, error, and result once succeeded."""
        return self._client.request("GET", f"/v1/jobs/{self.id}")

    def status(self) -> str:
        """queued, running, succeeded, failed, cancelled or expired."""
        return self.info()["status"]

    def cancel(self) -> None:
        """Cancel the job; InvalidInput (409) when it has already ended."""
        self._client.request("DELETE", f"/v1/jobs/{self.id}")

    def result(self, timeout: float = 60.0) -> dict[str, Any]:
        """The job's outputs once it succeeds; JobFailed if it ends otherwise, Timeout if not."""
        deadline, pause = time.monotonic() + timeout, 0.05
        while True:
            job = self.info()
            if job["status"] in FINISHED:
                return _outputs_of(job)
            left = deadline - time.monotonic()
            if left <= 0:
                message = f"job {self.id} did not end within {timeout:g}s; it is {job['status']}"
                raise Timeout(0, message, job_id=self.id)
            time.sleep(min(pause, left))
            pause = min(pause * 1.5, 1.0)


def _outputs_of(job: dict[str, Any]) -> dict[str, Any]:
    """The outputs of an ended job, or the JobFailed that says why there are none."""
    if job["status"] != "succeeded":
        raise JobFailed(f"job {job['job_id']} {job['status']}: {job.get('error')}", job)
    if job.get("result") is None:
        reason = job.get("message") or "the result has expired"
        raise ResultExpired(f"job {job['job_id']} succeeded, but {reason}", job)
    return tensors.decode_outputs(job["result"])


class Client:
    """A synchronous client; url and api_key default to INFERENCE_FARM_URL / _API_KEY.

    Answers 429 and 503, and failures to connect, are retried with exponential backoff
    (at least Retry-After) for up to retry_budget seconds in all; 0 turns retries off.
    """

    def __init__(
        self, url: str | None = None, api_key: str | None = None, timeout: float = 30.0,
        retry_budget: float = 30.0,
    ) -> None:  # fmt: skip
        self.url = (url or os.environ.get("INFERENCE_FARM_URL") or DEFAULT_URL).rstrip("/")
        api_key = api_key or os.environ.get("INFERENCE_FARM_API_KEY")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout, self.retry_budget = timeout, retry_budget
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self.models = Models(self)
        self.keys = Keys(self)

    def request(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> Any:
        """Send a request; the decoded JSON body, or the FarmClientError the answer maps to."""
        response = self.send(method, path, retry=retry, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def send(self, method: str, path: str, *, retry: bool = True, **kwargs: Any) -> httpx.Response:
        """Send a request, retrying 429, 503 and connection failures within the budget."""
        started, attempt = time.monotonic(), 0
        while True:
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TimeoutException as exc:
                if not isinstance(exc, httpx.ConnectTimeout):
                    raise Timeout(0, f"no answer from {self.url}{path} in time ({exc})") from None
                error, retryable = Unavailable(0, f"cannot reach {self.url}: {exc}"), True
            except httpx.TransportError as exc:
                # Only a failure to connect proves the server never saw the request.
                retryable = isinstance(exc, httpx.ConnectError) or method in ("GET", "HEAD")
                error = Unavailable(0, f"cannot reach {self.url}: {exc}")
            else:
                if not response.is_error:
                    return response
                error = error_of(response)
                retryable = error.status in RETRIED
            delay = self._backoff(error, attempt, started) if retry and retryable else None
            if delay is None:
                raise error
            time.sleep(delay)
            attempt += 1

    def _backoff(self, error: FarmClientError, attempt: int, started: float) -> float | None:
        """Seconds to wait before the next attempt; None once the budget would be spent."""
        return backoff(error, attempt, started, self.retry_budget)

    def infer(
        self, model: str, inputs: dict[str, np.ndarray], version: str | None = None,
        outputs: list[str] | None = None, timeout: float | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Run inference and wait; arrays by output name (lists of JSON for non-tensor ones)."""
        timeout = self.timeout if timeout is None else timeout
        # The server takes parameters.timeout in microseconds, as Triton's clients send it.
        parameters = {"timeout": max(1, round(timeout * 1e6))}
        body, header_length = tensors.encode_request(inputs, outputs, parameters)
        headers = {HEADER_LENGTH: str(header_length), "Content-Type": "application/octet-stream"}
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        response = self.send(
            "POST", path, content=body, headers=headers,
            timeout=httpx.Timeout(self.timeout, read=timeout + DEADLINE_SLACK),
        )  # fmt: skip
        length = response.headers.get(HEADER_LENGTH)
        return tensors.decode_response(response.content, None if length is None else int(length))

    def infer_many(
        self, model: str, batch: list[dict[str, np.ndarray]], workers: int = 4, **kwargs: Any
    ) -> list[dict[str, Any]]:
        """infer for each inputs of batch, a few at a time; the outputs in batch order."""
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(batch)))) as pool:
            return list(pool.map(lambda inputs: self.infer(model, inputs, **kwargs), batch))

    def submit(
        self, model: str, inputs: dict[str, np.ndarray], version: str | None = None,
        outputs: list[str] | None = None, priority: int | None = None,
        timeout: float | None = None,
    ) -> Job:  # fmt: skip
        """Queue one job (POST /v1/jobs); poll it with the Job."""
        item = tensors.job_request(model, inputs, version, outputs, priority, timeout)
        return Job(self, self.request("POST", "/v1/jobs", json=item)["job_id"])

    def submit_many(
        self, model: str, batch: list[dict[str, np.ndarray]], version: str | None = None,
        outputs: list[str] | None = None, priority: int | None = None,
        timeout: float | None = None,
    ) -> list[Job]:  # fmt: skip
        """Queue one job per inputs of batch in one request; none is queued if any is bad."""
        items = [
            tensors.job_request(model, one, version, outputs, priority, timeout) for one in batch
        ]
        answer = self.request("POST", "/v1/jobs", json={"requests": items})
        return [Job(self, ref["job_id"], answer["batch_id"]) for ref in answer["jobs"]]

    def job(self, job_id: str) -> Job:
        """The job of that id (no request is sent until it is asked about)."""
        return Job(self, job_id)

    def jobs(
        self, status: str | None = None, model: str | None = None, batch_id: str | None = None,
        limit: int = 50, offset: int = 0,
    ) -> dict[str, Any]:  # fmt: skip
        """Jobs newest first: {"jobs", "total", "limit", "offset"}."""
        query = {"status": status, "model": model, "batch_id": batch_id}
        params = {k: v for k, v in query.items() if v is not None}
        return self.request("GET", "/v1/jobs", params={**params, "limit": limit, "offset": offset})

    def server_metadata(self) -> dict[str, Any]:
        """The server's name, version and extensions (GET /v2)."""
        return self.request("GET", "/v2")

    def workers(self) -> list[dict[str, Any]]:
        """Live workers: hostname, queues with their depth, device and loaded sessions."""
        return self.request("GET", "/v1/workers")["workers"]

    def health(self) -> dict[str, Any]:
        """Readiness of the farm: {"ready": bool, "checks": {...}}, never raising on 503."""
        response = self._http.get("/v2/health/ready")
        body = response.json()
        return {**body, "ready": response.status_code == 200 and body.get("ready") is True}

    def close(self) -> None:
        """Close the HTTP connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
