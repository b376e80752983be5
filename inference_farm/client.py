"""Python client of the farm's REST API; imports only numpy and httpx."""

from __future__ import annotations

import os
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


class FarmClientError(Exception):
    """The server answered with an error; carries its status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Client:
    """A synchronous client; url and api_key default to INFERENCE_FARM_URL / _API_KEY."""

    def __init__(
        self, url: str | None = None, api_key: str | None = None, timeout: float = 30.0
    ) -> None:
        self.url = (url or os.environ.get("INFERENCE_FARM_URL") or DEFAULT_URL).rstrip("/")
        api_key = api_key or os.environ.get("INFERENCE_FARM_API_KEY")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def _get(self, path: str) -> Any:
        response = self._http.get(path)
        if response.is_error:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise FarmClientError(response.status_code, message)
        return response.json()

    def server_metadata(self) -> dict[str, Any]:
        """The server's name, version and extensions (GET /v2)."""
        return self._get("/v2")

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
