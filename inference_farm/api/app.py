"""The Flask app factory of the farm's REST API."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, request

from inference_farm import __version__
from inference_farm.api import metrics
from inference_farm.api.auth import authenticate
from inference_farm.api.coalescer import Coalescer
from inference_farm.api.console import routes as console
from inference_farm.api.context import Farm, farm
from inference_farm.api.errors import FarmApi, register_error_handlers
from inference_farm.api.ratelimit import Limiter
from inference_farm.api.routes import jobs, keys, models, repository, server, workers
from inference_farm.broker import events
from inference_farm.broker.app import create_celery
from inference_farm.broker.queues import QueueWatch
from inference_farm.registry import Database, changes
from inference_farm.registry.cached import RegistryCache
from inference_farm.settings import Settings, get_settings
from inference_farm.storage import ArtifactStore

SWAGGER_UI_CDN = "https://cdn.jsdelivr.net/npm/swagger-ui-dist/"
BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API key, as `Authorization: Bearer ifk_…`",
}


def _openapi_config(app: Flask) -> None:
    app.config.update(
        API_TITLE="inference-farm",
        API_VERSION=__version__,
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        OPENAPI_SWAGGER_UI_URL=SWAGGER_UI_CDN,
        # Every operation needs an API key, but those marked security: [] (health, metadata).
        API_SPEC_OPTIONS={
            "components": {"securitySchemes": {"bearer": BEARER}},
            "security": [{"bearer": []}],
        },
    )


def _upload_limit() -> None:
    # Uploads get their own, larger body limit; werkzeug enforces it while parsing.
    if request.endpoint == "models.Versions" and request.method == "POST":
        request.max_content_length = farm().settings.max_upload_bytes


def _forget_registry_reads(response: Response) -> Response:
    # A change to models or keys made here is seen at once by this process's next request.
    if request.method not in ("GET", "HEAD") and request.blueprint in ("models", "keys"):
        farm().registry.clear()
    return response


def create_app(settings: Settings | None = None) -> Flask:
    """Build the API for settings (default: the process settings)."""
    settings = settings or get_settings()
    app = Flask("inference_farm", static_folder=None)
    _openapi_config(app)
    db = Database(settings.effective_database_url)
    store = ArtifactStore(settings.effective_storage_url, settings.data_dir / "cache")
    celery = create_celery(settings)
    queues = QueueWatch(celery, settings.broker_url or "")
    coalescer = Coalescer(celery, queues, settings.coalesce_max_inflight, settings.max_queue_length)
    registry = RegistryCache(settings.registry_cache_seconds)
    app.extensions["farm"] = Farm(
        settings,
        db,
        celery,
        store,
        queues,
        Limiter(settings),
        registry,
        coalescer,
        # Cancels, retirements and uploads committed here reach every console at once.
        closers=[changes.watch(db, events.publisher(queues.redis))],
    )
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    metrics.install(app, settings)  # first: refused requests are counted and traced too
    app.before_request(authenticate)
    app.before_request(_upload_limit)
    app.after_request(_forget_registry_reads)
    app.teardown_appcontext(lambda _exc: db.remove())
    api = FarmApi(app)
    blueprints = (server, repository, models, jobs, keys, workers)
    for blueprint in (module.blp for module in blueprints):
        api.register_blueprint(blueprint)
    _document_infer(api)
    _document_events(api)
    app.register_blueprint(console.blp)  # a page, not an API operation: not in OpenAPI
    register_error_handlers(app)
    return app


def _without_plugins(api: FarmApi, path: str, operations: dict, **fields: Any) -> None:
    # apispec's Flask plugin wants a Flask rule for every path; the ASGI lanes have none.
    plugins, api.spec.plugins = api.spec.plugins, []
    try:
        api.spec.path(path=path, operations=operations, **fields)
    finally:
        api.spec.plugins = plugins


def _document_events(api: FarmApi) -> None:
    """Describe GET /v1/events in the OpenAPI document: the ASGI lane serves it."""
    stream = {"content": {"text/event-stream": {"schema": {"type": "string"}}}}
    get = {
        "tags": ["events"],
        "summary": "The farm live, as Server-Sent Events: a snapshot every events_interval "
        "seconds, and each version's or job's status change as it commits; parts by scope",
        "responses": {"200": {"description": "hello, snapshot, change and error events",
                              **stream}},
    }  # fmt: skip
    _without_plugins(api, "/v1/events", {"get": get})


def _document_infer(api: FarmApi) -> None:
    """Describe OIP infer in the OpenAPI document: the ASGI lane serves it, not Flask."""
    body = {"content": {"application/json": {"schema": {"type": "object"}}}}
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{version}/infer"):
        names = ["name", "version"] if "{version}" in path else ["name"]
        post = {
            "tags": ["infer"],
            "summary": "Run inference and wait for the answer (JSON, or Triton's binary "
            "tensor extension with Inference-Header-Content-Length)",
            "requestBody": {"required": True, **body},
            "responses": {"200": {"description": "The outputs", **body}},
        }
        parameters = [{"in": "path", "name": n, "required": True, "schema": {"type": "string"}}
                      for n in names]  # fmt: skip
        _without_plugins(api, path, {"post": post}, parameters=parameters)
