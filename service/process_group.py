"""Several server processes on one port, for machines with more than one core.

A Python gRPC server answers from about one core whatever its thread count (its handlers hold the
interpreter lock), so a server with spare cores runs one process per core: each child opens the store
and the model itself and listens on the same port with SO_REUSEPORT, and the kernel spreads incoming
connections over them. The parent reserves the port first (so that port 0 names one free port for all
and a port some other program holds is an error, not a silent share), starts the children, reports
when every one serves, and supervises: SIGTERM or SIGINT stops them gracefully, a child that dies
stops the others (the supervisor above restarts the group), and the children die with the parent.

Each child holds its own copy of the index and the records: memory grows with the process count. The
web app, when served, runs in the first child; Prometheus metrics are per process, so they are served
only with one process.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType

import torch

from latentdex.errors import CannotListen, LatentdexError, ModelMismatch, NoStore
from latentdex.indexer.parent_watch import die_with_parent
from latentdex.models.inference import LatentCodec, Precision
from latentdex.service.limits import Limits
from latentdex.service.live_store import LiveStore
from latentdex.service.queries import QueryEngine
from latentdex.service.server import EXIT_MARGIN_SECONDS, RunningServer, exit_process, serve_forever
from latentdex.service.server_config import ServerConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeSpec:
    """What a server process builds its engine from (picklable, for the children)."""

    store: Path
    model: Path | None = None
    precision: Precision = "auto"
    reload_interval: float = 1.0
    records_in_memory: bool = True
    limits: Limits = field(default_factory=Limits)
    torch_threads: int = 0
    log_format: str = "text"
    log_level: int = logging.INFO


def open_engine(spec: ServeSpec) -> tuple[QueryEngine, str]:
    """The engine `spec` describes, and a line on its store; ModelMismatch if the store holds latents
    of another model."""
    if spec.torch_threads:
        torch.set_num_threads(spec.torch_threads)
    codec = LatentCodec.load(spec.model, precision=spec.precision)
    live = LiveStore(spec.store, check_interval=spec.reload_interval, record_table=spec.records_in_memory)
    try:
        with live.use() as opened:
            if not codec.reads_latents_of(opened.model_id):
                live.close()
                raise ModelMismatch(
                    f"the store holds latents of {opened.model_id}, the model is {codec.model_id}: "
                    "pass --model with the store's model"
                )
            line = f"store {spec.store}: {opened.vector_count} images, model {opened.model_id}"
    except NoStore as exc:
        line = f"warning: {exc}; serving encode/decode until it is indexed"
    return QueryEngine(codec, live, spec.limits), line


def serve_processes(
    spec: ServeSpec, config: ServerConfig, count: int, on_ready: Callable[[int], None] | None = None
) -> int:
    """Serve with `count` processes on one port until SIGTERM or SIGINT (exit code 0), or until a child
    dies (1). `on_ready` gets the port once every child serves. Raises what a child could not start
    with (e.g. ModelMismatch; CannotListen for a port in use); ValueError for metrics or count < 2."""
    if count < 2:
        raise ValueError("a process group has at least two processes")
    if config.metrics_port is not None:
        raise ValueError("metrics are per process: serve them with --processes 1")
    reserved = _reserve_port(config.host, config.port)
    try:
        port = reserved.getsockname()[1]
        return _run_group(spec, replace(config, port=port, reuse_port=True), count, on_ready)
    finally:
        reserved.close()


def _run_group(
    spec: ServeSpec, config: ServerConfig, count: int, on_ready: Callable[[int], None] | None
) -> int:
    context = multiprocessing.get_context("spawn")  # no copy of this process's threads or gRPC state
    children: list[multiprocessing.process.BaseProcess] = []
    links: list[multiprocessing.connection.Connection] = []
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for index in range(count):
            ours, theirs = context.Pipe(duplex=False)
            child_config = config if index == 0 else replace(config, http_port=None)
            child = context.Process(
                target=_child,
                args=(spec, child_config, index, os.getpid(), theirs),
                name=f"latentdex-serve-{index}",
            )
            child.start()
            theirs.close()
            children.append(child)
            links.append(ours)
        for child, link in zip(children, links, strict=True):
            _await_ready(child, link, stop)
        if stop.is_set():
            return _stop_all(children, config.grace_seconds, 0)
        if on_ready is not None:
            on_ready(config.port)
        while not stop.is_set():
            if not multiprocessing.connection.wait([c.sentinel for c in children], timeout=0.2):
                continue
            dead = [c for c in children if not c.is_alive()]
            if not dead:
                continue
            if all(c.exitcode == 0 for c in dead):  # stopped by a signal to the whole group (Ctrl-C)
                return _stop_all(children, config.grace_seconds, 0)
            log.error(
                "server process %s exited (code %s): stopping the others", dead[0].name, dead[0].exitcode
            )
            return _stop_all(children, config.grace_seconds, 1)
        return _stop_all(children, config.grace_seconds, 0)
    except BaseException:
        _stop_all(children, 0, 1)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for link in links:
            link.close()


def _await_ready(
    child: multiprocessing.process.BaseProcess,
    link: multiprocessing.connection.Connection,
    stop: threading.Event,
) -> None:
    """Wait for `child` to report that it serves; raise what it failed with."""
    while not stop.is_set():
        if link.poll(0.2):
            try:
                kind, payload = link.recv()
            except EOFError:
                break
            if kind == "ready":
                return
            raise payload
        if not child.is_alive():
            break
    if not stop.is_set():
        raise LatentdexError(f"server process {child.name} exited (code {child.exitcode}) before serving")


def _stop_all(children: list[multiprocessing.process.BaseProcess], grace: float, code: int) -> int:
    """SIGTERM every child still running, give each the grace period, then SIGKILL what is left."""
    for child in children:
        if child.is_alive() and child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)
    for child in children:
        child.join(grace + EXIT_MARGIN_SECONDS + 2)
        if child.is_alive():
            child.kill()
            child.join()
    return code


def _reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound (not listening) to host:port with SO_REUSEPORT, which the children's servers share;
    CannotListen if another program holds the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    reserved = socket.socket(family, socket.SOCK_STREAM)
    reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        reserved.bind((host, port))
    except OSError as exc:
        reserved.close()
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return reserved


def _child(
    spec: ServeSpec,
    config: ServerConfig,
    index: int,
    parent: int,
    link: multiprocessing.connection.Connection,
) -> None:
    die_with_parent(parent)
    # the CLI's log format; imported here because the cli package imports this module
    from latentdex.service.cli.logs import configure_logging

    configure_logging(spec.log_format, spec.log_level, process_ids=True)
    try:
        engine, line = open_engine(spec)
    except LatentdexError as exc:
        link.send(("error", exc))
        exit_process(1)
    if index == 0:
        print(line, flush=True)

    def ready(running: RunningServer) -> None:
        link.send(("ready", running.port))

    try:
        stopped_by = serve_forever(engine, config, on_started=ready)
    except LatentdexError as exc:
        link.send(("error", exc))
        exit_process(1)
    finally:
        if engine.store is not None:
            engine.store.close()
    exit_process(0 if stopped_by is not None else 1)
