"""Open Inference Protocol server endpoints: metadata, liveness and readiness."""

from __future__ import annotations

from flask.typing import ResponseReturnValue
from flask_smorest import Blueprint

from inference_farm import __version__
from inference_farm.api.auth import OPEN, scope
from inference_farm.api.context import farm
from inference_farm.api.readiness import readiness

blp = Blueprint("server", __name__, url_prefix="/v2", description="Server metadata and health")


@blp.route("", strict_slashes=False)
@scope(OPEN)
@blp.doc(security=[])
def server_metadata() -> ResponseReturnValue:
    """Server name, version and protocol extensions"""
    return {"name": "inference-farm", "version": __version__, "extensions": []}


@blp.route("/health/live")
@scope(OPEN)
@blp.doc(security=[])
def live() -> ResponseReturnValue:
    """Liveness: the API process answers"""
    return {"live": True}


@blp.route("/health/ready")
@scope(OPEN)
@blp.doc(security=[])
def ready() -> ResponseReturnValue:
    """Readiness: the registry is reachable and migrated, and Redis answers"""
    context = farm()
    settings = context.settings
    state = readiness(
        context.db,
        settings.broker_url or "",
        settings.effective_result_backend or "",
        settings.health_timeout,
    )
    if state.ready:
        return {"ready": True, "checks": state.checks}
    return {"ready": False, "checks": state.checks, "error": state.problems}, 503
