"""Request and response schemas of the /v1 API, which flask-smorest also documents."""

from __future__ import annotations

from typing import Any

from flask_smorest.fields import Upload
from marshmallow import Schema, ValidationError, fields, validate

from inference_farm.registry import catalog
from inference_farm.registry.models import ModelVersion

BATCH_HELP = "Rows a worker stacks into one run; null: the farm's max_batch_size."
MAX_TEXT = 10_000  # characters of a description
MAX_ID = 2**31 - 1  # the largest row id and page offset the registry's integers hold


def storable(text: str) -> None:
    """Text every registry database can store: no NUL, no unpaired surrogate."""
    if "\x00" in text or any("\ud800" <= char <= "\udfff" for char in text):
        raise ValidationError("must not contain NUL or unpaired surrogate characters")


def text(max_length: int = MAX_TEXT, **options: Any) -> fields.String:
    """A string field the registry can store, of at most max_length characters."""
    checks = [validate.Length(max=max_length), storable]
    return fields.String(validate=checks, **options)


def model_name(**options: Any) -> fields.String:
    """A model name, checked against the naming rule."""
    checks = [validate.Regexp(catalog.NAME.pattern + r"\Z", error=catalog.NAME_RULE)]
    return fields.String(validate=checks, metadata={"description": catalog.NAME_RULE}, **options)


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

    name = text(64, required=True, metadata={"description": catalog.NAME_RULE})
    description = text(load_default="")


class ModelPatch(Batching):
    """Changes to a model; default_version null unpins."""

    description = text()
    default_version = text(32, allow_none=True)


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
    warnings = fields.Function(
        lambda record: list(record.warnings or []),
        metadata={"description": "What validation noticed but did not refuse, such as a smoke "
                  "run that found no input to run on."},
    )  # fmt: skip
    artifact_format = fields.String(metadata={"description": "onnx, zip or tar"})
    archive_entry = fields.String(
        allow_none=True, metadata={"description": "The model's .onnx file inside the archive."}
    )
    warmup = fields.Function(
        lambda record: record.warmup_sha256 is not None,
        metadata={"description": "Whether sample inputs came with the upload."},
    )
    producer_name = fields.Function(lambda record: _info(record, "producer_name"))
    producer_version = fields.Function(lambda record: _info(record, "producer_version"))
    opset_imports = fields.Function(lambda record: _info(record, "opset_imports"))
    doc_string = fields.Function(lambda record: _info(record, "doc_string"))
    metadata_props = fields.Function(lambda record: _info(record, "metadata_props"))
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


def _info(record: ModelVersion, key: str) -> Any:
    """What the model file says about itself under key; None before validation."""
    return (record.model_info or {}).get(key)


class UploadForm(Schema):
    """Form fields of an upload."""

    version = text(32, metadata={"description": catalog.VERSION_RULE})
    description = text(load_default="")
    model_file = text(
        1024, metadata={"description": "The .onnx member of an archive that holds several."}
    )


class UploadFile(Schema):
    """The uploaded model: an .onnx file, or a .zip / .tar[.gz] archive of one with its
    external data; and optional sample inputs, as .npz or an OIP JSON infer request."""

    file = Upload(required=True)
    warmup = Upload()


class VersionPatch(Schema):
    """Changes to a version."""

    description = text(required=True)


class VersionQuery(Schema):
    """Filters of a version listing."""

    include_retired = fields.Boolean(load_default=False)


def version_status(record: ModelVersion) -> dict[str, Any]:
    """A version as the API shows it."""
    return VersionOut().dump(record)


LIMIT_HELP = "This key's own limit; null: the farm's default."


class KeyMe(Schema):
    """The calling key as it sees itself: never its secret or hash."""

    id = fields.Integer()
    name = fields.String()
    prefix = fields.String()
    scopes = fields.List(fields.String())
    models = fields.List(
        fields.String(), allow_none=True, metadata={"description": "null: every model."}
    )
    expires_at = fields.DateTime(allow_none=True, metadata={"description": "null: never."})
    rate_per_second = fields.Float(allow_none=True, metadata={"description": LIMIT_HELP})
    burst = fields.Integer(allow_none=True, metadata={"description": LIMIT_HELP})
    max_queued_jobs = fields.Integer(allow_none=True, metadata={"description": LIMIT_HELP})
    created_at = fields.DateTime()
    last_used_at = fields.DateTime(allow_none=True)
