"""What an operator sees of a running server: Prometheus metrics and one structured log line per request.

`ObservabilityInterceptor` wraps every call: it counts requests by RPC and status code, times them, and
logs one JSON line (request id, RPC, k, milliseconds, status) on the `latentdex.requests` logger. A client
may send its own `x-request-id`; otherwise one is made, and it comes back in the reply's initial metadata.
`ServerMetrics.observe_stages` records where the query engine spent each query's time, and `serve_metrics`
exposes everything on an HTTP port for Prometheus to scrape.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

REQUEST_LOG = logging.getLogger("latentdex.requests")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REQUEST_ID_KEY = "x-request-id"


class ServerMetrics:
    """The server's Prometheus metrics, in a registry of their own (tests make several servers)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "latentdex_requests",
            "Requests answered, by RPC and status code.",
            ["rpc", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "latentdex_request_seconds",
            "Time to answer a request, by RPC.",
            ["rpc"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stages = Histogram(
            "latentdex_stage_seconds",
            "Query time by stage: image_decode, encode, search, metadata, preview, thumbnail.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.store_images = Gauge(
            "latentdex_store_images", "Images in the store the server answers from.", registry=self.registry
        )
        self.model = Gauge(
            "latentdex_model_info",
            "The model the server encodes with (value 1).",
            ["model_id", "precision"],
            registry=self.registry,
        )
        self._stage = _Children(self.stages)
        self._request = _Children(self.requests)
        self._latency = _Children(self.latency)

    def observe_stages(self, seconds: Mapping[str, float]) -> None:
        """Record one query's (or batch's) time per stage; stages it did not need (0 s) are skipped."""
        for stage, value in seconds.items():
            if value > 0:
                self._stage(stage).observe(value)

    def answered(self, rpc: str, code: grpc.StatusCode, seconds: float) -> None:
        """Count and time one answered call."""
        self._request(rpc, code.name).inc()
        self._latency(rpc).observe(seconds)


class _Children:
    """A labelled metric's children by label values, looked up in a dict rather than by `labels` (which
    takes a lock and checks the values on every call and query). Racing threads may both make a child:
    `labels` gives both the same one."""

    __slots__ = ("_made", "_metric")

    def __init__(self, metric: Counter | Histogram) -> None:
        self._metric = metric
        self._made: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._made.get(values)
        if child is None:
            child = self._made[values] = self._metric.labels(*values)
        return child


def serve_metrics(metrics: ServerMetrics, host: str, port: int) -> int:
    """Expose `metrics` over HTTP at http://host:port/metrics; returns the port (0 picks a free one)."""
    server, _ = start_http_server(port, addr=host, registry=metrics.registry)
    return int(server.server_port)


class ObservabilityInterceptor(grpc.ServerInterceptor):
    """Counts, times and logs every unary call (health and reflection included)."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler  # streaming calls (reflection) pass through untimed
        method = handler_call_details.method or ""
        rpc = method.rsplit("/", 1)[-1]
        given = dict(handler_call_details.invocation_metadata or ()).get(REQUEST_ID_KEY)
        behaviour = handler.unary_unary

        def observed(request: Any, context: grpc.ServicerContext) -> Any:
            request_id = str(given) if given else os.urandom(8).hex()
            context.send_initial_metadata(((REQUEST_ID_KEY, request_id),))
            started = time.perf_counter()
            code = grpc.StatusCode.OK
            try:
                return behaviour(request, context)
            except Exception:
                code = context.code() or grpc.StatusCode.UNKNOWN
                raise
            finally:
                seconds = time.perf_counter() - started
                self.metrics.answered(rpc, code, seconds)
                if REQUEST_LOG.isEnabledFor(logging.INFO):  # no line to build when nobody reads it
                    try:
                        _log_request(request_id, method, request, seconds, code, context)
                    except Exception:  # a log line must never fail the request it describes
                        REQUEST_LOG.exception("cannot log request %s", request_id)

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def _log_request(
    request_id: str,
    method: str,
    request: Any,
    seconds: float,
    code: grpc.StatusCode,
    context: grpc.ServicerContext,
) -> None:
    line: dict[str, Any] = {
        "request_id": request_id,
        "rpc": method,
        "ms": round(seconds * 1000, 3),
        "status": code.name,
    }
    options = getattr(request, "options", None)
    if options is not None and hasattr(options, "k"):
        line["k"] = options.k or 10
    if code != grpc.StatusCode.OK:
        details = context.details() or ""
        line["error"] = details.decode("utf-8", "replace") if isinstance(details, bytes) else str(details)
    line["peer"] = context.peer()
    REQUEST_LOG.info(json.dumps(line, separators=(",", ":")))
