"""The API app on SQLite and a closed broker port, and its test client."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from inference_farm.api import create_app
from inference_farm.settings import Settings


@pytest.fixture
def app(sqlite_settings: Settings) -> Iterator[Flask]:
    """An API app on sqlite_settings, its engine disposed after the test."""
    app = create_app(sqlite_settings)
    yield app
    app.extensions["farm"].db.engine.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of the app."""
    return app.test_client()
