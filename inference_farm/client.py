"""Python client of the farm's REST API; imports only numpy and httpx."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
CHUNK = 1 << 20


class FarmClientError(Exception):
    """The server answered with an error; carries its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class _Progress:
    """A readable file that reports how many bytes were read so far."""

    def __init__(self, handle: BinaryIO, report: Callable[[int], None] | None) -> None:
        self.handle, self.report = handle, report

    def fileno(self) -> int:
        """The file's descriptor, so the upload is sent with a Content-Length."""
        return self.handle.fileno()

    def seek(self, offset: int, whence: int = 0) -> int:
        """Seek the underlying file."""
        return self.handle.seek(offset, whence)

    def tell(self) -> int:
        """Position in the underlying file."""
        return self.handle.tell()

    def read(self, size: int = -1) -> bytes:
        chunk = self.handle.read(CHUNK if size is None or size < 0 else size)
        if self.report and chunk:
            self.report(len(chunk))
        return chunk


class Models:
    """Model management through /v1/models and the /v2 repository extension."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def upload(
        self,
        path: str | Path,
        name: str,
        version: str | None = None,
        description: str = "",
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Upload an .onnx file as a new version; progress(n) is called per chunk sent."""
        form = {"description": description, **({"version": version} if version else {})}
        with open(path, "rb") as handle:
            files = {"file": (Path(path).name, _Progress(handle, progress))}
            return self._client.request(
                "POST", f"/v1/models/{name}/versions", data=form, files=files, timeout=None
            )

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


class Client:
    """A synchronous client; url and api_key default to INFERENCE_FARM_URL / _API_KEY."""

    def __init__(
        self, url: str | None = None, api_key: str | None = None, timeout: float = 30.0
    ) -> None:
        self.url = (url or os.environ.get("INFERENCE_FARM_URL") or DEFAULT_URL).rstrip("/")
        api_key = api_key or os.environ.get("INFERENCE_FARM_API_KEY")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)
        self.models = Models(self)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request; the decoded JSON body, or FarmClientError with the server's message."""
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise FarmClientError(0, f"cannot reach {self.url}: {exc}") from None
        if response.is_error:
            raise FarmClientError(response.status_code, _message(response))
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def server_metadata(self) -> dict[str, Any]:
        """The server's name, version and extensions (GET /v2)."""
        return self.request("GET", "/v2")

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


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or body)
    return str(body)
