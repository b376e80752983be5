"""The Flask app factory of the farm's REST API."""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery
from flask import Flask, current_app

from inference_farm import __version__
from inference_farm.api.errors import FarmApi, register_error_handlers
from inference_farm.celery_app import create_celery
from inference_farm.registry import Database
from inference_farm.settings import Settings, get_settings

SWAGGER_UI_CDN = "https://cdn.jsdelivr.net/npm/swagger-ui-dist/"


@dataclass
class Farm:
    """What every request handler needs: settings, registry and Celery app."""

    settings: Settings
    db: Database
    celery: Celery


def farm() -> Farm:
    """The Farm of the current Flask app."""
    return current_app.extensions["farm"]


def _openapi_config(app: Flask) -> None:
    app.config.update(
        API_TITLE="inference-farm",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=SWAGGER_UI_CDN,
    )


def create_app(settings: Settings | None = None) -> Flask:
    """Build the API for settings (default: the process settings)."""
    from inference_farm.api import server

    settings = settings or get_settings()
    app = Flask("inference_farm")
    _openapi_config(app)
    db = Database(settings.effective_database_url)
    app.extensions["farm"] = Farm(settings=settings, db=db, celery=create_celery(settings))
    app.teardown_appcontext(lambda _exc: db.remove())
    api = FarmApi(app)
    api.register_blueprint(server.blp)
    register_error_handlers(app)
    return app
