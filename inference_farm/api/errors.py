"""Error bodies: {"error": …} on /v2 (Open Inference Protocol), flask-smorest's shape on /v1."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue
from flask_smorest import Api
from sqlalchemy.orm.exc import ObjectDeletedError, StaleDataError
from werkzeug.exceptions import HTTPException

from inference_farm.errors import Conflict, FarmError, RateLimited, Unavailable

log = logging.getLogger(__name__)


def error_body(path: str, status: int, message: str, **extra: Any) -> dict[str, Any]:
    """The error body of a request to path: {"error"} on /v2, flask-smorest's on /v1."""
    if path.startswith("/v2"):
        body: dict[str, Any] = {"error": message}
    else:
        body = {
            "code": status,
            "status": HTTPStatus(status).phrase,
            "message": message,
            "error": message,
        }
    return {**body, **extra}


def error_response(status: int, message: str, **extra: Any) -> ResponseReturnValue:
    """The error body for the current Flask request, with status."""
    return jsonify(error_body(request.path, status, message, **extra)), status


def _flatten(messages: Any, path: str = "") -> list[str]:
    """Field errors as 'location.field: message' lines."""
    if isinstance(messages, dict):
        return [
            line
            for key, value in messages.items()
            for line in _flatten(value, f"{path}.{key}" if path else str(key))
        ]
    if isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        return [f"{path}: {' '.join(messages)}"]
    return [f"{path}: {messages}"]


def _string_keys(messages: Any) -> Any:
    """Field errors with every key a string: a form part without a name arrives keyed None."""
    if isinstance(messages, dict):
        return {
            "(unnamed)" if key is None else str(key): _string_keys(value)
            for key, value in messages.items()
        }
    return messages


class FarmApi(Api):
    """flask-smorest's Api with the farm's error bodies."""

    def handle_http_exception(self, error: HTTPException) -> ResponseReturnValue:
        """Render a werkzeug HTTP error (404, 405, 422 …) as the farm's error body."""
        extra: dict[str, Any] = {}
        description = error.description or ""
        messages = _string_keys(getattr(error, "data", {}).get("messages"))
        if messages:
            extra["errors"] = messages
            description = "invalid request: " + "; ".join(_flatten(messages))
        if error.code == 413 and request.max_content_length:
            description = (
                f"the request body is larger than the limit of {request.max_content_length} bytes"
            )
        response, status = error_response(error.code or 500, description, **extra)
        for name, value in error.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, status


def error_headers(error: FarmError) -> dict[str, str]:
    """The headers a FarmError's response carries: Retry-After, WWW-Authenticate."""
    headers = dict(getattr(error, "headers", {}))
    if isinstance(error, RateLimited | Unavailable) and error.retry_after:
        headers["Retry-After"] = str(error.retry_after)
    return headers


def log_farm_error(error: FarmError) -> None:
    """Log a server-side FarmError once; a client's mistake is not the server's news."""
    if error.status >= 500:
        log.warning("%s: %s", type(error).__name__, error.message)


def _handle_farm_error(error: FarmError) -> ResponseReturnValue:
    log_farm_error(error)
    response, status = error_response(error.status, error.message, **error.extra)
    for name, value in error_headers(error).items():
        response.headers[name] = value
    return response, status


INTERNAL = "internal server error; the server log has the details"


def _handle_unexpected(error: Exception) -> ResponseReturnValue:
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, INTERNAL)


def _handle_lost_race(error: Exception) -> ResponseReturnValue:
    """A row this request changed was deleted or changed by another one meanwhile."""
    log.info("lost a race on %s %s: %s", request.method, request.path, error)
    return _handle_farm_error(
        Conflict("another request changed or deleted this record meanwhile; read it and retry")
    )


def register_error_handlers(app: Flask) -> None:
    """Route FarmError and anything unexpected to the farm's error bodies."""
    app.register_error_handler(FarmError, _handle_farm_error)
    app.register_error_handler(StaleDataError, _handle_lost_race)
    app.register_error_handler(ObjectDeletedError, _handle_lost_race)
    app.register_error_handler(Exception, _handle_unexpected)
