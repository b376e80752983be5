"""Request and response schemas of the /v1 API, which flask-smorest also documents."""

from __future__ import annotations

from typing import Any

from flask_smorest.fields import Upload
from marshmallow import Schema, fields, validate

from inference_farm.registry import catalog
from inference_farm.registry.models import ModelVersion

BATCH_HELP = "Rows a worker stacks into one run; null: the farm's max_batch_size."
DELAY_HELP = "Milliseconds a worker waits to fill a batch; null: the farm's max_queue_delay_ms."


class Batching(Schema):
    """A model's dynamic batching limits."""

    max_batch_size = fields.Integer(
        allow_none=True, validate=validate.Range(1, 4096), metadata={"description": BATCH_HELP}
    )
    max_queue_delay_ms = fields.Float(
        allow_none=True, validate=validate.Range(0, 1000), metadata={"description": DELAY_HELP}
    )


class ModelCreate(Batching):
    """A new model."""

    name = fields.String(required=True, metadata={"description": catalog.NAME_RULE})
    description = fields.String(load_default="")


class ModelPatch(Batching):
    """Changes to a model; default_version null unpins."""

    description = fields.String()
    default_version = fields.String(allow_none=True)


class VersionSummary(Schema):
    """A version and its status."""

    version = fields.String()
    status = fields.String()


class ModelOut(Schema):
    """A model with its versions."""

    name = fields.String()
    description = fields.String()
    default_version = fields.String(
        allow_none=True, metadata={"description": "The version pinned with PATCH, if any."}
    )
    serving_version = fields.Method(
        "_serving", metadata={"description": "The version served when none is asked for."}
    )
    versions = fields.Method("_versions")
    max_batch_size = fields.Integer(allow_none=True, metadata={"description": BATCH_HELP})
    max_queue_delay_ms = fields.Float(allow_none=True, metadata={"description": DELAY_HELP})
    created_at = fields.DateTime()
    updated_at = fields.DateTime()

    def _serving(self, model: Any) -> str | None:
        chosen = catalog.default_version(model)
        return chosen.version if chosen else None

    def _versions(self, model: Any) -> list[dict]:
        return VersionSummary(many=True).dump(catalog.versions(model))


class VersionOut(Schema):
    """One version of a model: artifact, signature and validation outcome."""

    model = fields.Function(lambda record: record.model.name)
    version = fields.String()
    status = fields.String(metadata={"description": "pending, ready, failed or retired"})
    description = fields.String()
    sha256 = fields.String()
    size_bytes = fields.Integer()
    signature = fields.Dict()
    batchable = fields.Boolean()
    error = fields.String(allow_none=True)
    load_time_ms = fields.Float(allow_none=True)
    memory_bytes = fields.Integer(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class UploadForm(Schema):
    """Form fields of an upload."""

    version = fields.String(metadata={"description": catalog.VERSION_RULE})
    description = fields.String(load_default="")


class UploadFile(Schema):
    """The uploaded .onnx file."""

    file = Upload(required=True)


class VersionPatch(Schema):
    """Changes to a version."""

    description = fields.String(required=True)


class VersionQuery(Schema):
    """Filters of a version listing."""

    include_retired = fields.Boolean(load_default=False)


def version_status(record: ModelVersion) -> dict[str, Any]:
    """A version as the API shows it."""
    return VersionOut().dump(record)
