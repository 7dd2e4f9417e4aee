"""How a CLI command reaches a latentdex server: a running one (`--server`), or one it starts itself
in-process on a free loopback port over a local store (`--store`), so the same client code serves both."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from latentdex.service.server_config import DEFAULT_PORT, LOOPBACK, ServerConfig

if TYPE_CHECKING:
    from latentdex.service.client import LatentdexClient

TOKEN_ENV = "LATENTDEX_TOKEN"
ServerOption = Annotated[
    str | None, typer.Option(help=f"HOST:PORT of a latentdex server (default {LOOPBACK}:{DEFAULT_PORT}).")
]
StoreOption = Annotated[
    Path | None, typer.Option("--store", help="Use this local store through a private in-process server.")
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        envvar=TOKEN_ENV, help=f"Bearer token (better passed in ${TOKEN_ENV} than on the command line)."
    ),
]
TlsCaOption = Annotated[Path | None, typer.Option(help="PEM CA of the server's certificate: use TLS.")]
TlsCertOption = Annotated[Path | None, typer.Option(help="PEM client certificate (mutual TLS).")]
TlsKeyOption = Annotated[Path | None, typer.Option(help="PEM key of --tls-cert.")]
TimeoutOption = Annotated[float, typer.Option(min=0.1, help="Seconds to wait for each answer.")]


@contextmanager
def connected(
    server: str | None,
    store: Path | None = None,
    model: Path | None = None,
    *,
    token: str | None = None,
    tls_ca: Path | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    timeout: float = 60.0,
) -> Iterator[LatentdexClient]:
    """A client for `server`, or for a private server over the local `store` (stopped afterwards)."""
    from latentdex.service.client import TlsConfig, connect

    if server and store:
        raise typer.BadParameter("give --server or --store, not both")
    if store is None:
        tls = None
        if tls_ca or tls_cert:
            tls = TlsConfig(
                root_certificates=tls_ca.read_bytes() if tls_ca else None,
                cert_chain=tls_cert.read_bytes() if tls_cert else None,
                private_key=tls_key.read_bytes() if tls_key else None,
            )
        with connect(server or f"{LOOPBACK}:{DEFAULT_PORT}", token=token, tls=tls, timeout=timeout) as client:
            yield client
        return
    from latentdex.models.inference import LatentCodec
    from latentdex.service.live_store import LiveStore
    from latentdex.service.queries import QueryEngine
    from latentdex.service.server import start_server

    live = LiveStore(store)
    running = start_server(QueryEngine(LatentCodec.load(model, precision="auto"), live), ServerConfig(port=0))
    try:
        with connect(f"{LOOPBACK}:{running.port}", timeout=timeout) as client:
            yield client
    finally:
        running.stop(0)
        live.close()
