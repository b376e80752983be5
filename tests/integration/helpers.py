"""Helpers of the model lifecycle tests: upload through the API, wait for validation."""

from __future__ import annotations

import io
import time
from typing import Any

import onnx
from flask.testing import FlaskClient

WAIT_S = 90


def upload(api: FlaskClient, name: str, content: bytes, **form: str) -> Any:
    """POST a model file as multipart; the response."""
    data = {"file": (io.BytesIO(content), "model.onnx"), **form}
    return api.post(f"/v1/models/{name}/versions", data=data, content_type="multipart/form-data")


def settled(api: FlaskClient, name: str, version: str) -> dict:
    """The version record once it is no longer pending."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        record = api.get(f"/v1/models/{name}/versions/{version}").get_json()
        if record["status"] != "pending":
            return record
        time.sleep(0.2)
    raise AssertionError(f"{name} {version} still pending after {WAIT_S}s")


def model_bytes(model: onnx.ModelProto) -> bytes:
    """Serialized model."""
    return model.SerializeToString()
