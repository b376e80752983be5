"""Logging, configured once per process."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s"
_configured = False


def configure_logging(level: str = "INFO") -> None:
    """Send every logger to stderr at level; later calls only change the level."""
    global _configured
    root = logging.getLogger()
    if not _configured:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(handler)
        _configured = True
    root.setLevel(level)
    # Alembic narrates every migration step and httpx every request at INFO.
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
