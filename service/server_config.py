"""How a server runs: its address, limits, TLS files and options, without the server itself.

Kept apart from `service.server` so that what only describes a server (the CLI's option defaults, a
process group's children) loads neither the engine nor torch.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc

LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 50051
MiB = 1024 * 1024


@dataclass(frozen=True)
class TlsFiles:
    """PEM files: the server's certificate chain and key; with `client_ca`, clients must present a
    certificate signed by it (mutual TLS)."""

    cert_chain: Path
    private_key: Path
    client_ca: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        import grpc  # only a TLS server needs it: commands that only describe a server load no gRPC

        pairs = [(self.private_key.read_bytes(), self.cert_chain.read_bytes())]
        if self.client_ca is None:
            return grpc.ssl_server_credentials(pairs)
        return grpc.ssl_server_credentials(
            pairs, root_certificates=self.client_ca.read_bytes(), require_client_auth=True
        )

    def ssl_context(self) -> ssl.SSLContext:
        """The same certificate (and client-certificate rule) for the HTTP port."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_chain, self.private_key)
        if self.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.client_ca)
        return context


@dataclass(frozen=True)
class ServerConfig:
    """How to run the server. `port` 0 picks a free port (see `RunningServer.port`)."""

    host: str = LOOPBACK
    port: int = DEFAULT_PORT
    max_workers: int = 8
    max_concurrent_rpcs: int = 64
    max_message_bytes: int = 32 * MiB
    token: str | None = None
    tls: TlsFiles | None = None
    grace_seconds: float = 5.0
    # FAISS threads per search, set in every RPC thread (OpenMP's count is per thread). One: a single
    # query's exact search is no faster on more threads (the scan is memory-bound), concurrent calls
    # already spread over the cores, and on a busy machine an OpenMP team waits for its slowest thread:
    # a 10k search took 16 ms on two threads against 0.08 ms on one. None leaves FAISS's default.
    faiss_threads: int | None = 1
    # Concurrent queries by latent or id without previews answered in shared engine calls (QueryBatcher).
    batch_queries: bool = True
    # Prometheus metrics over HTTP on this port of `host` (0: a free one); None: not served.
    metrics_port: int | None = None
    # The web app and the HTTP/JSON API on this port of `host` (0: a free one); None: not served.
    http_port: int | None = None
    # Share the port with other servers that set it too (a process group, service.process_group).
    reuse_port: bool = False
