"""What the gRPC server adds around its services: bytes that do not parse as the method's
message end as INVALID_ARGUMENT (grpcio's own answer is UNKNOWN), and the standard health
service answers from the same readiness checks as ServerReady and /v2/health/ready."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2

from inference_farm.api.dataplane import DataPlane
from inference_farm.api.readiness import readiness


class Undecodable:
    """A request whose bytes did not parse; message says why."""

    def __init__(self, message: str) -> None:
        self.message = message


def _tolerant(deserialize: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as error:
            return Undecodable(str(error))

    return parse


def _refusing(method: str, behaviour: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Undecodable):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"the request to {method} is not a valid protobuf message ({request.message}); "
                "send the method's request message, serialized",
            )
        return await behaviour(request, context)

    return call


class DecodeGuard(grpc.aio.ServerInterceptor):
    """Unary methods answer undecodable request bytes with INVALID_ARGUMENT and a message."""

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        """The method's handler, its deserializer made tolerant and its behaviour guarded."""
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None or handler.request_deserializer is None:
            return handler
        return handler._replace(
            request_deserializer=_tolerant(handler.request_deserializer),
            unary_unary=_refusing(details.method, handler.unary_unary),
        )


async def farm_ready(plane: DataPlane) -> bool:
    """True when the registry is reachable and migrated and Redis answers."""
    settings = plane.farm.settings
    state = await plane.blocking(
        readiness, plane.farm.db, settings.broker_url or "",
        settings.effective_result_backend or "", settings.health_timeout,
    )  # fmt: skip
    return state.ready


class ReadinessHealth(health.aio.HealthServicer):
    """grpc.health.v1.Health whose services are SERVING while the farm is ready: each Check
    of one of them (and the start of each Watch) runs the readiness checks first."""

    def __init__(self, plane: DataPlane, services: tuple[str, ...]) -> None:
        super().__init__()
        self.plane, self.services = plane, services

    async def refresh(self) -> None:
        """Set every service SERVING or NOT_SERVING from the readiness checks now."""
        serving = health_pb2.HealthCheckResponse
        status = serving.SERVING if await farm_ready(self.plane) else serving.NOT_SERVING
        for name in self.services:
            await self.set(name, status)

    async def Check(self, request: Any, context: Any) -> Any:
        """The service's status, after a fresh readiness check."""
        if request.service in self.services:
            await self.refresh()
        return await super().Check(request, context)

    async def Watch(self, request: Any, context: Any) -> None:
        """Stream the service's status, starting from a fresh readiness check."""
        if request.service in self.services:
            await self.refresh()
        await super().Watch(request, context)
