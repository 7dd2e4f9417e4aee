"""The gRPC server: the Latentdex service, standard health checks and server reflection, in one process.

`start_server` binds (loopback unless told otherwise), optionally with TLS (and client certificates) and
a bearer-token check, and returns a `RunningServer`; `serve_forever` runs one until SIGTERM or Ctrl-C and
then shuts down gracefully: health turns NOT_SERVING, new calls are refused, calls in flight get
`grace_seconds` to finish. Concurrency is bounded: `max_workers` threads run calls, and beyond
`max_concurrent_rpcs` calls in progress a new one gets RESOURCE_EXHAUSTED rather than a queue.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import NoReturn

import faiss
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from latentdex.errors import CannotListen
from latentdex.service.auth import TokenInterceptor
from latentdex.service.http_gateway import HttpServer
from latentdex.service.observability import ObservabilityInterceptor, ServerMetrics, serve_metrics
from latentdex.service.queries import QueryEngine
from latentdex.service.rpc import SERVICE_NAME, LatentdexServicer
from latentdex.service.server_config import ServerConfig
from latentdex.v1 import latentdex_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)


class RunningServer:
    """A started server: its port, and a graceful `stop`."""

    def __init__(
        self,
        server: grpc.Server,
        port: int,
        health_servicer: health.HealthServicer,
        metrics: ServerMetrics,
        metrics_port: int | None,
        http: HttpServer | None = None,
        private_dir: Path | None = None,
    ) -> None:
        self.server = server
        self.port = port
        self.metrics = metrics
        self.metrics_port = metrics_port
        self.http = http
        self.http_port = None if http is None else http.port
        self._private_dir = private_dir
        self._health = health_servicer
        self._stopped = threading.Event()

    def stop(self, grace_seconds: float | None = 5.0) -> None:
        """Report NOT_SERVING, refuse new calls, give calls in flight `grace_seconds`, then stop."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._health.enter_graceful_shutdown()
        if self.http is not None:
            self.http.stop()
        self.server.stop(grace_seconds).wait()
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the server stops (or `timeout`); True if it stopped."""
        return not self.server.wait_for_termination(timeout)  # grpc returns True on timeout


def rpc_executor(config: ServerConfig) -> ThreadPoolExecutor:
    """The threads that run the RPCs, each with the configured FAISS thread count."""
    return ThreadPoolExecutor(
        max_workers=config.max_workers,
        thread_name_prefix="latentdex-rpc",
        initializer=_set_faiss_threads,
        initargs=(config.faiss_threads,),
    )


def _set_faiss_threads(count: int | None) -> None:
    if count is not None:
        faiss.omp_set_num_threads(count)


def start_server(engine: QueryEngine, config: ServerConfig | None = None) -> RunningServer:
    """Build, bind and start a server for `engine`; raises CannotListen if an address cannot be bound."""
    config = config or ServerConfig()
    options = [
        ("grpc.max_receive_message_length", config.max_message_bytes),
        ("grpc.max_send_message_length", config.max_message_bytes),
        # a second server on the same port is an error, not a silent share, unless a process group asks
        ("grpc.so_reuseport", int(config.reuse_port)),
    ]
    metrics = ServerMetrics()
    metrics.model.labels(engine.codec.model_id, engine.codec.precision).set(1)
    metrics.store_images.set_function(lambda: _store_images(engine))
    engine.stage_observer = metrics.observe_stages
    # Observability first, so that calls the token check refuses are counted and logged too. `is not None`:
    # an empty token is refused by TokenInterceptor, never taken as "no token check".
    interceptors: list[grpc.ServerInterceptor] = [ObservabilityInterceptor(metrics)]
    if config.token is not None:
        interceptors.append(TokenInterceptor(config.token))
    server = grpc.server(
        rpc_executor(config),
        interceptors=interceptors,
        options=options,
        maximum_concurrent_rpcs=config.max_concurrent_rpcs,
    )
    pb_grpc.add_LatentdexServicer_to_server(LatentdexServicer(engine, config.batch_queries), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
    reflection.enable_server_reflection((SERVICE_NAME, health_name, reflection.SERVICE_NAME), server)
    address = f"[{config.host}]:{config.port}" if ":" in config.host else f"{config.host}:{config.port}"
    try:
        if config.tls is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, config.tls.credentials())
    except RuntimeError as exc:
        raise CannotListen(f"cannot listen on {address}: {exc}") from exc
    if port == 0:
        raise CannotListen(f"cannot listen on {address} (in use, or not an address of this machine)")
    private_dir = None
    if config.http_port is not None:
        # the HTTP gateway's way in: a socket only this process's user can reach, behind the interceptors
        private_dir = Path(tempfile.mkdtemp(prefix="latentdex-"))
        gateway_target = f"unix:{private_dir / 'grpc.sock'}"
        if server.add_insecure_port(gateway_target) == 0:
            raise CannotListen(f"cannot listen on {gateway_target}")
    metrics_port = None
    if config.metrics_port is not None:
        metrics_port = serve_metrics(metrics, config.host, config.metrics_port)
        log.info("metrics on http://%s:%d/metrics", config.host, metrics_port)
    server.start()
    http = None
    if config.http_port is not None and private_dir is not None:
        tls = config.tls.ssl_context() if config.tls is not None else None
        try:
            http = HttpServer(config.host, config.http_port, gateway_target, config.max_message_bytes, tls)
        except OSError as exc:
            server.stop(0)
            shutil.rmtree(private_dir, ignore_errors=True)
            raise CannotListen(f"cannot listen on {config.host}:{config.http_port}: {exc}") from exc
        scheme = "https" if tls else "http"
        log.info("web app on %s://%s:%d/", scheme, config.host, http.port)
    for service in ("", SERVICE_NAME):
        health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
    log.info("serving %s on %s:%d%s", SERVICE_NAME, config.host, port, " (TLS)" if config.tls else "")
    return RunningServer(server, port, health_servicer, metrics, metrics_port, http, private_dir)


def _store_images(engine: QueryEngine) -> float:
    info = engine.info()
    return float(info.store.image_count) if info.store is not None else 0.0


EXIT_MARGIN_SECONDS = 0.5


def _exit_now(signum: int) -> None:
    log.warning("calls still running %.1f s after the grace period: exiting now", EXIT_MARGIN_SECONDS)
    exit_process(128 + signum)


def serve_forever(
    engine: QueryEngine, config: ServerConfig, on_started: Callable[[RunningServer], None] | None = None
) -> int | None:
    """Run a server until SIGTERM or SIGINT, then stop gracefully (must run in the main thread).
    `on_started` is called once it serves.

    Returns the signal that stopped it (None if the server stopped otherwise). A caller that is the
    whole process then ends it with `exit_process`: calls still running after the grace period, or a
    slow interpreter teardown, must not keep a stopped server's process alive.
    """
    running = start_server(engine, config)
    received: list[int] = []

    def shut_down(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        log.info("signal %d: shutting down (grace %.1f s)", signum, config.grace_seconds)
        # stop() blocks on the grace period: not inside a signal handler
        threading.Thread(target=running.stop, args=(config.grace_seconds,), daemon=True).start()
        # A handler still busy after the grace period would hold the interpreter's exit (it joins
        # every worker thread): the process ends then, whatever its threads are doing.
        watchdog = threading.Timer(config.grace_seconds + EXIT_MARGIN_SECONDS, _exit_now, args=(signum,))
        watchdog.daemon = True
        watchdog.start()

    previous = {sig: signal.signal(sig, shut_down) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if on_started is not None:
            on_started(running)
        running.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        running.stop(0)
    return received[0] if received else None


def exit_process(code: int = 0) -> NoReturn:
    """End the process now, after flushing output and logs, without waiting for other threads."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
