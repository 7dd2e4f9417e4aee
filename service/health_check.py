"""The client side of the standard gRPC health check: what `latentdex health` and container probes ask."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def check_health(
    target: str, service: str = "", timeout: float = 3.0, root_certificates: bytes | None = None
) -> str:
    """The status name the server at `target` reports for `service` ("SERVING", "NOT_SERVING", ...), or
    the gRPC error code's name ("UNAVAILABLE", "DEADLINE_EXCEEDED") when it cannot be asked."""
    if root_certificates is None:
        channel = grpc.insecure_channel(target)
    else:
        channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates))
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=timeout
        )
        return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    except grpc.RpcError as exc:
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        return code.name
    finally:
        channel.close()
