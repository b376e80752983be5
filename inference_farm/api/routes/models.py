"""/v1/models: create, list, change and delete models; upload and manage their versions."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint

from inference_farm.api import lifecycle
from inference_farm.api.auth import scope
from inference_farm.api.context import farm
from inference_farm.api.schemas import (
    ModelCreate,
    ModelOut,
    ModelPatch,
    UploadFile,
    UploadForm,
    VersionOut,
    VersionPatch,
    VersionQuery,
)
from inference_farm.errors import PayloadTooLarge
from inference_farm.registry import catalog
from inference_farm.storage import archives

blp = Blueprint("models", __name__, url_prefix="/v1/models", description="Models and versions")


def _session() -> Any:
    return farm().db.session()


def _read_bounded(stream: Any, limit: int) -> bytes:
    """The stream's content; 413 past limit bytes."""
    content = stream.read(limit + 1)
    if len(content) > limit:
        raise PayloadTooLarge(f"the warmup file is larger than max_request_bytes ({limit})")
    return content


def _set_batching(session: Any, model: Any, body: dict) -> None:
    """Apply the batching limits given in body, if any."""
    changed = False
    for field in ("max_batch_size", "max_queue_delay_ms"):
        if field in body:
            setattr(model, field, body[field])
            changed = True
    if changed:
        session.commit()


@blp.route("")
class Models(MethodView):
    """The collection of models."""

    @scope("models:read")
    @blp.response(200, ModelOut(many=True))
    def get(self) -> Any:
        """List models"""
        return catalog.list_models(_session())

    @scope("models:write")
    @blp.arguments(ModelCreate)
    @blp.response(201, ModelOut)
    def post(self, body: dict) -> Any:
        """Create a model"""
        session = _session()
        model = catalog.create_model(session, body["name"], body["description"])
        _set_batching(session, model, body)
        lifecycle.announce_model(farm().celery, model.name)
        return model


@blp.route("/<name>")
class OneModel(MethodView):
    """One model."""

    @scope("models:read")
    @blp.response(200, ModelOut)
    def get(self, name: str) -> Any:
        """Show a model and its versions"""
        return catalog.get_model(_session(), name)

    @scope("models:write")
    @blp.arguments(ModelPatch)
    @blp.response(200, ModelOut)
    def patch(self, body: dict, name: str) -> Any:
        """Change a model's description or pin its default version"""
        session = _session()
        model = catalog.get_model(session, name)
        if "description" in body:
            model.description = body["description"]
        _set_batching(session, model, body)
        if "default_version" in body:
            return catalog.pin_default(session, model, body["default_version"])
        session.commit()
        return model

    @scope("models:write")
    @blp.response(204)
    def delete(self, name: str) -> None:
        """Delete a model: retire its versions, evict them from workers, drop its artifacts"""
        context = farm()
        session = _session()
        lifecycle.delete_model(
            session, context.store, context.celery, catalog.get_model(session, name)
        )


@blp.route("/<name>/versions")
class Versions(MethodView):
    """The versions of a model."""

    @scope("models:read")
    @blp.arguments(VersionQuery, location="query")
    @blp.response(200, VersionOut(many=True))
    def get(self, query: dict, name: str) -> Any:
        """List a model's versions, newest first"""
        model = catalog.get_model(_session(), name)
        return catalog.versions(model, include_retired=query["include_retired"])

    @scope("models:write")
    @blp.arguments(UploadForm, location="form")
    @blp.arguments(UploadFile, location="files")
    @blp.response(202, VersionOut)
    def post(self, form: dict, files: dict, name: str) -> Any:
        """Upload a new version (multipart field `file`); it is validated on a worker"""
        context = farm()
        settings = context.settings
        warmup = files.get("warmup")
        options = lifecycle.UploadOptions(
            version=form.get("version") or None,
            description=form["description"],
            warmup=_read_bounded(warmup.stream, settings.max_request_bytes) if warmup else None,
            model_file=form.get("model_file") or None,
            max_bytes=settings.max_upload_bytes,
            max_elements=settings.max_tensor_elements,
            limits=archives.Limits.of(settings),
        )
        record = lifecycle.upload(
            _session(), context.store, context.celery, name, files["file"].stream, options
        )
        return record, 202, {"Location": f"{request.path}/{record.version}"}


@blp.route("/<name>/versions/<version>")
class OneVersion(MethodView):
    """One version of a model."""

    @scope("models:read")
    @blp.response(200, VersionOut)
    def get(self, name: str, version: str) -> Any:
        """Show a version: status, signature, validation outcome"""
        return catalog.get_version(_session(), name, version)

    @scope("models:write")
    @blp.arguments(VersionPatch)
    @blp.response(200, VersionOut)
    def patch(self, body: dict, name: str, version: str) -> Any:
        """Change a version's description"""
        session = _session()
        record = catalog.get_version(session, name, version)
        record.description = body["description"]
        session.commit()
        return catalog.get_version(session, name, version)  # 404 if a delete came between

    @scope("models:write")
    @blp.response(200, VersionOut)
    def delete(self, name: str, version: str) -> Any:
        """Retire a version: it stops being served and workers evict it"""
        context = farm()
        session = _session()
        record = catalog.get_version(session, name, version)
        return lifecycle.retire_version(session, context.store, context.celery, record)
