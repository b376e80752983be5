"""Logging, configured once per process: text or JSON lines, each with its request id."""

from __future__ import annotations

import datetime as dt
import json
import logging

from inference_farm.telemetry import request_ids

FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"
# A record may carry `fields` (extra={"fields": {...}}): JSON lines hold them as keys.
FIELDS = "fields"
_handler: logging.Handler | None = None


class TextFormatter(logging.Formatter):
    """The classic line, with request_id=… appended while a request is being served."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        """The record as one text line."""
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        if request_id and "request_id=" not in record.getMessage():
            line += f" request_id={request_id}"
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, pid, logger, message, request id, fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one JSON line."""
        moment = dt.datetime.fromtimestamp(record.created, dt.timezone.utc)
        document = {
            "time": moment.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if getattr(record, "request_id", None):
            document["request_id"] = record.request_id  # type: ignore[attr-defined]
        document.update(getattr(record, FIELDS, None) or {})
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def _with_request_id(record: logging.LogRecord) -> bool:
    if not getattr(record, "request_id", None):
        record.request_id = request_ids.current()
    return True


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send every logger to stderr at level, as text or JSON; later calls may change both."""
    global _handler
    root = logging.getLogger()
    if _handler is None:
        _handler = logging.StreamHandler()
        _handler.addFilter(_with_request_id)
        root.addHandler(_handler)
    _handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.setLevel(level)
    # Alembic narrates every migration step and httpx every request at INFO.
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
