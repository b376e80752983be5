"""The API process's gRPC server: the inference service, health and reflection, on the
event loop the HTTP side runs on (grpc.aio), so that gRPC and REST requests coalesce."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask

from inference_farm.api.dataplane import DataPlane
from inference_farm.settings import Settings

log = logging.getLogger(__name__)
HEALTH_SERVICES = ("", "inference.GRPCInferenceService")
GRACE_S = 5.0


def _credentials(settings: Settings) -> Any:
    import grpc

    if settings.tls_cert is None or settings.tls_key is None:
        return None
    pair = (settings.tls_key.read_bytes(), settings.tls_cert.read_bytes())
    return grpc.ssl_server_credentials([pair])


async def start(settings: Settings, flask_app: Flask, plane: DataPlane) -> Any | None:
    """A started grpc.aio server on grpc_port, or None when grpc_port is 0 or grpcio is missing."""
    if not settings.grpc_port:
        return None
    try:
        import grpc
        from grpc_health.v1 import health, health_pb2_grpc
        from grpc_reflection.v1alpha import reflection
    except ImportError:
        log.warning("gRPC is off: install inference-farm[grpc] to serve grpc_port")
        return None
    from inference_farm.api.grpc_service import InferenceServicer
    from inference_farm.api.grpc_support import DecodeGuard, ReadinessHealth
    from inference_farm.protocol.grpc import inference_pb2, inference_pb2_grpc

    limit = settings.max_request_bytes + 64 * 1024  # the tensors, plus the message's own framing
    server = grpc.aio.server(
        interceptors=[DecodeGuard()],
        options=[("grpc.max_receive_message_length", limit), ("grpc.so_reuseport", 1)],
    )
    inference_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(
        InferenceServicer(flask_app, plane), server
    )
    checker = ReadinessHealth(plane, HEALTH_SERVICES)  # SERVING while the farm is ready
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    await checker.refresh()
    names = [*HEALTH_SERVICES[1:], health.SERVICE_NAME, reflection.SERVICE_NAME]
    reflection.enable_server_reflection(names, server, pool=inference_pb2.POOL)
    address = f"{settings.api_host}:{settings.grpc_port}"
    credentials = _credentials(settings)
    if credentials is None:
        server.add_insecure_port(address)
    else:
        server.add_secure_port(address, credentials)
    await server.start()
    log.info("gRPC serving on %s%s", address, " (TLS)" if credentials else "")
    return server


async def stop(server: Any | None) -> None:
    """Stop the server, letting calls in flight finish within a grace period."""
    if server is not None:
        await server.stop(GRACE_S)
