"""inference.GRPCInferenceService: the Open Inference Protocol over gRPC, on the one data plane.

ModelInfer makes the same one call into DataPlane that the REST lane makes; the metadata,
readiness and repository RPCs run the REST routes' own functions in the Flask app's context.
Keys come from `authorization: Bearer …` metadata; a FarmError ends the call with its gRPC
status code and the message REST would send.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from flask import Flask

from inference_farm import __version__
from inference_farm.api import grpc_support
from inference_farm.api.auth import OPEN, key_for
from inference_farm.api.dataplane import MAX_TIMEOUT_S, MICROSECONDS, DataPlane
from inference_farm.api.errors import INTERNAL, log_farm_error
from inference_farm.api.routes import repository
from inference_farm.errors import FarmError, RateLimited, Unavailable
from inference_farm.protocol.grpc import codec
from inference_farm.protocol.grpc import inference_pb2 as pb
from inference_farm.protocol.grpc import inference_pb2_grpc as pb_grpc
from inference_farm.telemetry import metrics, request_ids

log = logging.getLogger(__name__)


def _metadata(context: grpc.aio.ServicerContext) -> dict[str, str]:
    return {key.lower(): value for key, value in context.invocation_metadata() or ()}


def rpc(scope: str, model_of: Callable[[Any], str | None] = lambda _request: None) -> Any:
    """An RPC that needs scope (for the model model_of names): request id, key, metrics,
    and FarmError mapped onto its gRPC status."""

    def wrap(method: Callable[..., Awaitable[Any]]) -> Any:
        @functools.wraps(method)
        async def call(self: InferenceServicer, request: Any, context: Any) -> Any:
            started, code = time.perf_counter(), grpc.StatusCode.OK
            headers = _metadata(context)
            request_id = request_ids.accept(headers.get(request_ids.HEADER.lower()))
            token = request_ids.bind(request_id)
            await context.send_initial_metadata(((request_ids.HEADER.lower(), request_id),))
            try:
                if scope != OPEN:
                    await self.authorize(headers, scope, model_of(request), method.__name__)
                return await method(self, request, context)
            except FarmError as error:
                code = grpc.StatusCode[error.grpc_code]
                await _abort(context, error)
            except Exception:
                log.exception("unhandled error on gRPC %s", method.__name__)
                code = grpc.StatusCode.INTERNAL
                await context.abort(code, INTERNAL)
            finally:
                request_ids.unbind(token)
                seconds = time.perf_counter() - started
                metrics.observe_rpc(method.__name__, model_of(request) or "", code.name, seconds)

        return call

    return wrap


async def _abort(context: Any, error: FarmError) -> None:
    log_farm_error(error)
    retry = getattr(error, "retry_after", None)
    if isinstance(error, RateLimited | Unavailable) and retry:
        context.set_trailing_metadata((("retry-after", str(retry)),))
    await context.abort(grpc.StatusCode[error.grpc_code], error.message)


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    """The service for one API process: its Flask app (for the registry) and data plane."""

    def __init__(self, flask_app: Flask, plane: DataPlane) -> None:
        self.app, self.plane, self.farm = flask_app, plane, plane.farm

    async def authorize(self, headers: dict[str, str], scope: str, model: str | None,
                        name: str) -> None:  # fmt: skip
        """401, 403 or 429 unless the key in the authorization metadata may do this."""
        authorization = headers.get("authorization", "")
        if scope == "infer" and model is not None:
            await self.plane.authorize(authorization, model, f"gRPC {name}")
            return
        await self.plane.blocking(key_for, self.farm, authorization, scope, model, f"gRPC {name}")

    async def in_app(self, work: Callable[..., Any], *args: Any) -> Any:
        """work(*args), a REST route's function, in the Flask app's context on the plane."""

        def run() -> Any:
            with self.app.app_context():
                return work(*args)

        return await self.plane.blocking(run)

    @rpc(OPEN)
    async def ServerLive(self, request: Any, context: Any) -> pb.ServerLiveResponse:
        """The process answers."""
        return pb.ServerLiveResponse(live=True)

    @rpc(OPEN)
    async def ServerReady(self, request: Any, context: Any) -> pb.ServerReadyResponse:
        """Ready when the registry is reachable and migrated and Redis answers."""
        return pb.ServerReadyResponse(ready=await grpc_support.farm_ready(self.plane))

    @rpc(OPEN)
    async def ServerMetadata(self, request: Any, context: Any) -> pb.ServerMetadataResponse:
        """Server name, version and protocol extensions."""
        return pb.ServerMetadataResponse(name="inference-farm", version=__version__)

    @rpc("models:read", lambda request: request.name)
    async def ModelReady(self, request: Any, context: Any) -> pb.ModelReadyResponse:
        """Ready when the version (or the one served by default) is ready."""
        try:
            await self.in_app(repository.ready_version, request.name, request.version or None)
        except FarmError as error:
            if error.status not in (400, 404):
                raise
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=True)

    @rpc("models:read", lambda request: request.name)
    async def ModelMetadata(self, request: Any, context: Any) -> pb.ModelMetadataResponse:
        """Inputs, outputs and versions of a ready version."""
        if request.version:
            found = await self.in_app(repository.version_metadata, request.name, request.version)
        else:
            found = await self.in_app(repository.model_metadata, request.name)
        return pb.ModelMetadataResponse(**found)

    @rpc("infer", lambda request: request.model_name)
    async def ModelInfer(self, request: Any, context: Any) -> pb.ModelInferResponse:
        """Run the model: the same data plane as REST, so requests of both coalesce."""
        parsed = codec.parse_infer(request, self.farm.settings.max_tensor_elements)
        remaining = context.time_remaining()  # the call's own deadline, when it has one
        if remaining is not None and "timeout" not in parsed.parameters:
            parsed.parameters["timeout"] = min(max(remaining, 1e-3), MAX_TIMEOUT_S) * MICROSECONDS
        name, version = request.model_name, request.model_version or None
        reply = await self.plane.infer(name, version, parsed)
        return codec.build_infer(name, str(reply.model_version), parsed, reply.outputs or {})

    @rpc("models:read")
    async def RepositoryIndex(self, request: Any, context: Any) -> pb.RepositoryIndexResponse:
        """Every model version that is not deleted, with its state."""
        rows = await self.in_app(repository.repository_index)
        if request.ready:
            rows = [row for row in rows if row["state"] == "READY"]
        return pb.RepositoryIndexResponse(models=rows)

    @rpc("models:write", lambda request: request.model_name)
    async def RepositoryModelLoad(self, request: Any, context: Any) -> Any:
        """Warm the model's default version on every worker that serves it."""
        await self.in_app(repository.load, request.model_name)
        return pb.RepositoryModelLoadResponse()

    @rpc("models:write", lambda request: request.model_name)
    async def RepositoryModelUnload(self, request: Any, context: Any) -> Any:
        """Evict every version of the model from every worker."""
        await self.in_app(repository.unload, request.model_name)
        return pb.RepositoryModelUnloadResponse()
