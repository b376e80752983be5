"""Open Inference Protocol model metadata and readiness, and the model repository extension."""

from __future__ import annotations

import time
from typing import Any

from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint

from inference_farm.api import enqueue, lifecycle
from inference_farm.api.auth import scope
from inference_farm.api.context import farm
from inference_farm.broker import control, heartbeat
from inference_farm.broker.names import LOAD_COMMAND, model_queue
from inference_farm.errors import InvalidInput, Unavailable, error_for_status
from inference_farm.registry import catalog
from inference_farm.registry.models import ModelVersion

blp = Blueprint(
    "repository", __name__, url_prefix="/v2", description="Models (Open Inference Protocol)"
)
PLATFORM = "onnxruntime_onnx"
LOAD_TIMEOUT_S = 60.0
STATES = {"ready": "READY", "pending": "LOADING", "failed": "UNAVAILABLE"}


def _tensors(entries: list[dict]) -> list[dict]:
    return [{k: e[k] for k in ("name", "datatype", "shape")} for e in entries]


def _metadata(record: ModelVersion, versions: list[str]) -> dict[str, Any]:
    signature = record.signature or {}
    return {
        "name": record.model.name,
        "versions": versions,
        "platform": PLATFORM,
        "inputs": _tensors(signature.get("inputs", [])),
        "outputs": _tensors(signature.get("outputs", [])),
    }


def ready_version(name: str, version: str | None) -> ModelVersion:
    """The version (or the one served by default) when it is ready; 400 or 404 otherwise."""
    record = catalog.resolve(farm().db.session(), name, version)
    if record.status != "ready":
        reason = f": {record.error}" if record.error else ""
        raise InvalidInput(f"version {record.version} of model {name!r} is {record.status}{reason}")
    return record


@blp.route("/models/<name>")
@scope("models:read")
def model_metadata(name: str) -> ResponseReturnValue:
    """Metadata of the version served by default: inputs, outputs, versions"""
    record = ready_version(name, None)
    ready = [v.version for v in catalog.versions(record.model) if v.status == "ready"]
    return _metadata(record, ready)


@blp.route("/models/<name>/versions/<version>")
@scope("models:read")
def version_metadata(name: str, version: str) -> ResponseReturnValue:
    """Metadata of one version"""
    return _metadata(ready_version(name, version), [version])


@blp.route("/models/<name>/ready")
@scope("models:read")
def model_ready(name: str) -> ResponseReturnValue:
    """200 when the model has a ready version"""
    record = ready_version(name, None)
    return {"name": name, "version": record.version, "ready": True}


@blp.route("/models/<name>/versions/<version>/ready")
@scope("models:read")
def version_ready(name: str, version: str) -> ResponseReturnValue:
    """200 when this version is ready"""
    ready_version(name, version)
    return {"name": name, "version": version, "ready": True}


@blp.route("/repository/index", methods=["POST"])
@scope("models:read")
def repository_index() -> ResponseReturnValue:
    """Every model version that is not deleted, with its state"""
    rows = []
    for model in catalog.list_models(farm().db.session()):
        for record in catalog.versions(model):
            row = {"name": model.name, "version": record.version}
            row["state"] = STATES.get(record.status, "UNAVAILABLE")
            if record.error:
                row["reason"] = record.error
            rows.append(row)
    return rows


def _live_workers(celery: Any) -> int:
    """Workers a load should wait for: those that answer a ping within 1 s, else those whose
    fresh heartbeat says they are alive but busy (a long batch); 0 when none is alive."""
    beats = heartbeat.read_all(farm().queues.redis)
    answered = control.call(celery, "ping", timeout=1.0, limit=len(beats) or None)
    if answered:
        return len(answered)
    recent = time.time() - heartbeat.FRESH_S
    return sum(1 for beat in beats.values() if float(beat.get("at") or 0) >= recent)


def _broadcast(command: str, name: str, expect_replies: bool) -> list[dict]:
    celery = farm().celery
    try:
        workers = _live_workers(celery) if expect_replies else 0
        if expect_replies and not workers:
            return []  # nobody owes an answer: waiting for one would take the whole timeout
        replies = control.call(
            celery,
            "broadcast",
            command,
            arguments={"name": name, "version": None},
            reply=expect_replies,
            timeout=LOAD_TIMEOUT_S,
            limit=workers or None,
        )
    except Exception as exc:
        raise Unavailable(f"could not reach the workers through the broker: {exc}") from None
    return [answer for reply in replies or [] for answer in reply.values()]


@blp.route("/repository/models/<name>/load", methods=["POST"])
@scope("models:write")
def load(name: str) -> ResponseReturnValue:
    """Warm the model's default version on every worker that serves it"""
    ready_version(name, None)
    answers = _broadcast(LOAD_COMMAND, name, expect_replies=True)
    errors = [a for a in answers if "error" in a]
    if any("ok" in a for a in answers):
        return {}
    if errors:
        first = errors[0]
        raise error_for_status(int(first.get("status", 500)), first["error"])
    raise enqueue.no_worker(name, model_queue(name))  # 503 with Retry-After


@blp.route("/repository/models/<name>/unload", methods=["POST"])
@scope("models:write")
def unload(name: str) -> ResponseReturnValue:
    """Evict every version of the model from every worker"""
    catalog.get_model(farm().db.session(), name)
    _broadcast(lifecycle.EVICT_COMMAND, name, expect_replies=False)
    return {}
