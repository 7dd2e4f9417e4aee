"""The server's front door: bearer tokens, TLS and mutual TLS, reflection, health and binding, on real
servers listening on ephemeral loopback ports (certificates made with the `openssl` command)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pool, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from indexing_support import write_photos

from latentdex.indexer.pipeline import IndexOptions, index_folder
from latentdex.models.inference import LatentCodec
from latentdex.service.client import ServerError, TlsConfig, connect
from latentdex.service.live_store import LiveStore
from latentdex.service.queries import QueryEngine
from latentdex.service.server import RunningServer, start_server
from latentdex.service.server_config import ServerConfig, TlsFiles

TOKEN = "s3cret-token"
SERVICE = "latentdex.v1.Latentdex"
HEALTH = "grpc.health.v1.Health"
REFLECTION = "grpc.reflection.v1alpha.ServerReflection"
METHODS = {"Encode", "Decode", "GetInfo", "QueryByImage", "QueryByLatent", "QueryById", "QueryBatch"}
METHODS |= {"Generate", "Interpolate", "Edit", "CreateDirection", "ListDirections", "DeleteDirection"}
METHODS |= {"Traverse", "GetLatentStats", "RenderMap", "GetImage", "ListImages", "FindDuplicates"}
REFUSED_TIMEOUT = 3.0  # seconds: a refused connection fails fast; this only bounds a hang
PHOTOS = 6

needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="the openssl command is needed to make test certificates"
)


# --- certificates ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    """PEM files: a CA, a server certificate it signed (localhost, 127.0.0.1), a client certificate it
    signed, and an unrelated CA with a client certificate of its own."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_client_cert: Path
    other_client_key: Path


def _openssl(folder: Path, *args: str) -> None:
    done = subprocess.run(["openssl", *args], cwd=folder, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"openssl {' '.join(args)} failed:\n{done.stderr}"


def _make_ca(folder: Path, name: str) -> tuple[Path, Path]:
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    _openssl(
        folder,
        *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
        *("-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", f"/CN={name}"),
        *("-addext", "basicConstraints=critical,CA:TRUE"),
        *("-addext", "keyUsage=critical,keyCertSign,cRLSign"),
    )
    return cert, key


def _make_leaf(
    folder: Path, name: str, ca: tuple[Path, Path], extensions: str, serial: int
) -> tuple[Path, Path]:
    """A key and a certificate for `name`, signed by `ca`, with the given v3 `extensions` lines."""
    cert, key, request, extfile = (folder / f"{name}{suffix}" for suffix in (".pem", ".key", ".csr", ".ext"))
    extfile.write_text(extensions)
    _openssl(
        folder,
        *("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
        *("-keyout", str(key), "-out", str(request), "-subj", f"/CN={name}"),
    )
    _openssl(
        folder,
        *("x509", "-req", "-in", str(request), "-CA", str(ca[0]), "-CAkey", str(ca[1])),
        *("-set_serial", str(serial), "-days", "2", "-out", str(cert), "-extfile", str(extfile)),
    )
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    folder = tmp_path_factory.mktemp("pki")
    ca = _make_ca(folder, "test-ca")
    other_ca = _make_ca(folder, "other-ca")
    client_ext = "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=clientAuth\n"
    server = _make_leaf(
        folder,
        "localhost",
        ca,
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
        serial=1001,
    )
    client = _make_leaf(folder, "client", ca, client_ext, serial=1002)
    other_client = _make_leaf(folder, "other-client", other_ca, client_ext, serial=2001)
    return Pki(ca[0], *server, *client, other_ca[0], *other_client)


def _tls(
    pki: Pki, *, root: Path | None = None, client: tuple[Path, Path] | None = None, name: str | None = None
) -> TlsConfig:
    """Client TLS settings: trust `root` (default: the test CA), optionally present `client` (cert, key)."""
    return TlsConfig(
        root_certificates=(root or pki.ca).read_bytes(),
        cert_chain=client[0].read_bytes() if client else None,
        private_key=client[1].read_bytes() if client else None,
        server_name=name,
    )


# --- a store, an engine and servers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def codec() -> LatentCodec:
    return LatentCodec.load()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory, codec: LatentCodec) -> QueryEngine:
    """A query engine over a small real store of `PHOTOS` images, indexed with the default model."""
    root = tmp_path_factory.mktemp("store")
    write_photos(root / "photos", PHOTOS, size=64)
    index_folder(root / "photos", root / "store", codec, IndexOptions(workers=1))
    return QueryEngine(codec, LiveStore(root / "store"))


def _serve(
    engine: QueryEngine, token: str | None = None, tls: TlsFiles | None = None
) -> Iterator[RunningServer]:
    """A server on an ephemeral port of the default (loopback) host, stopped when the fixture ends."""
    running = start_server(engine, ServerConfig(port=0, max_workers=4, token=token, tls=tls))
    try:
        yield running
    finally:
        running.stop(0)


@pytest.fixture(scope="module")
def plain_server(engine: QueryEngine) -> Iterator[RunningServer]:
    yield from _serve(engine)


@pytest.fixture(scope="module")
def token_server(engine: QueryEngine) -> Iterator[RunningServer]:
    yield from _serve(engine, token=TOKEN)


@pytest.fixture(scope="module")
def tls_server(engine: QueryEngine, pki: Pki) -> Iterator[RunningServer]:
    yield from _serve(engine, tls=TlsFiles(pki.server_cert, pki.server_key))


@pytest.fixture(scope="module")
def mtls_server(engine: QueryEngine, pki: Pki) -> Iterator[RunningServer]:
    yield from _serve(engine, tls=TlsFiles(pki.server_cert, pki.server_key, client_ca=pki.ca))


@pytest.fixture(scope="module")
def tls_token_server(engine: QueryEngine, pki: Pki) -> Iterator[RunningServer]:
    yield from _serve(engine, token=TOKEN, tls=TlsFiles(pki.server_cert, pki.server_key))


def _target(running: RunningServer) -> str:
    return f"127.0.0.1:{running.port}"


def _info_error(
    running: RunningServer, token: str | None = None, tls: TlsConfig | None = None
) -> ServerError:
    """The ServerError a GetInfo call with this token and TLS raises (fails the test if none)."""
    with (
        connect(_target(running), token=token, tls=tls, timeout=REFUSED_TIMEOUT) as client,
        pytest.raises(ServerError) as refused,
    ):
        client.info()
    return refused.value


def _health(channel: grpc.Channel, service: str = "") -> int:
    reply = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=REFUSED_TIMEOUT
    )
    return reply.status


# --- 1. bearer token -----------------------------------------------------------------------------------


def test_without_a_token_a_token_server_refuses_the_call(token_server: RunningServer) -> None:
    error = _info_error(token_server)
    assert error.code == "UNAUTHENTICATED"
    assert "token" in error.details


@pytest.mark.parametrize("token", ["wrong-token", TOKEN + "x", TOKEN[:-1], TOKEN.upper()])
def test_a_wrong_token_is_refused(token_server: RunningServer, token: str) -> None:
    assert _info_error(token_server, token=token).code == "UNAUTHENTICATED"


@pytest.mark.parametrize("value", [TOKEN, f"Basic {TOKEN}", f"bearer{TOKEN}", f"Bearer  {TOKEN}"])
def test_an_authorization_header_not_exactly_bearer_token_is_refused(
    token_server: RunningServer, value: str
) -> None:
    with grpc.insecure_channel(_target(token_server)) as channel:
        call = channel.unary_unary("/latentdex.v1.Latentdex/GetInfo")
        with pytest.raises(grpc.RpcError) as refused:
            call(b"", metadata=(("authorization", value),), timeout=REFUSED_TIMEOUT)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_refused_call_does_not_run_the_handler(token_server: RunningServer) -> None:
    # a latent of the wrong size would be INVALID_ARGUMENT if the handler ran: auth must answer first
    with (
        connect(_target(token_server), timeout=REFUSED_TIMEOUT) as client,
        pytest.raises(ServerError) as refused,
    ):
        client.query_by_latent(np.zeros(3, np.float32), k=2)
    assert refused.value.code == "UNAUTHENTICATED"


def test_the_right_token_is_served_and_refusals_leave_the_server_serving(
    token_server: RunningServer, codec: LatentCodec
) -> None:
    for _ in range(3):
        assert _info_error(token_server, token="nope").code == "UNAUTHENTICATED"
    with connect(_target(token_server), token=TOKEN, timeout=10) as client:
        info = client.info()
        assert info.model_id == codec.model_id
        assert info.latent_dim == 128
        assert info.has_store and info.image_count == PHOTOS
        result = client.query_by_latent(np.ones(128, np.float32), k=2)
    assert len(result.matches) == 2


def test_health_needs_no_token(token_server: RunningServer) -> None:
    with grpc.insecure_channel(_target(token_server)) as channel:
        assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
        assert _health(channel, SERVICE) == health_pb2.HealthCheckResponse.SERVING


def test_reflection_needs_the_token(token_server: RunningServer) -> None:
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    with grpc.insecure_channel(_target(token_server)) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.ServerReflectionInfo(iter([request]), timeout=REFUSED_TIMEOUT))
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        replies = list(
            stub.ServerReflectionInfo(
                iter([request]), timeout=10, metadata=(("authorization", f"Bearer {TOKEN}"),)
            )
        )
    names = {service.name for service in replies[0].list_services_response.service}
    assert SERVICE in names


def test_without_a_token_configured_calls_need_none(plain_server: RunningServer, codec: LatentCodec) -> None:
    with connect(_target(plain_server), timeout=10) as client:
        assert client.info().model_id == codec.model_id
    with connect(_target(plain_server), token="anything", timeout=10) as client:
        assert client.info().latent_dim == 128


# --- 2. TLS --------------------------------------------------------------------------------------------


@needs_openssl
def test_a_client_trusting_the_ca_is_served_over_tls(tls_server: RunningServer, pki: Pki) -> None:
    # connecting to 127.0.0.1 checks the certificate's IP address; with "localhost", its DNS name
    for name in (None, "localhost"):
        with connect(_target(tls_server), tls=_tls(pki, name=name), timeout=10) as client:
            assert client.info().latent_dim == 128


@needs_openssl
def test_a_plaintext_client_cannot_talk_to_a_tls_server(tls_server: RunningServer) -> None:
    assert _info_error(tls_server).code == "UNAVAILABLE"


@needs_openssl
def test_a_client_trusting_another_ca_refuses_the_server(tls_server: RunningServer, pki: Pki) -> None:
    assert _info_error(tls_server, tls=_tls(pki, root=pki.other_ca)).code == "UNAVAILABLE"


@needs_openssl
def test_a_client_checks_the_server_name(tls_server: RunningServer, pki: Pki) -> None:
    assert _info_error(tls_server, tls=_tls(pki, name="not-localhost.example")).code == "UNAVAILABLE"


@needs_openssl
def test_a_tls_client_cannot_talk_to_a_plaintext_server(plain_server: RunningServer, pki: Pki) -> None:
    assert _info_error(plain_server, tls=_tls(pki)).code == "UNAVAILABLE"


# --- 3. mutual TLS -------------------------------------------------------------------------------------


@needs_openssl
def test_a_client_certificate_signed_by_the_ca_is_served(mtls_server: RunningServer, pki: Pki) -> None:
    tls = _tls(pki, client=(pki.client_cert, pki.client_key), name="localhost")
    with connect(_target(mtls_server), tls=tls, timeout=10) as client:
        assert client.info().latent_dim == 128


@needs_openssl
def test_mutual_tls_refuses_a_client_without_a_certificate(mtls_server: RunningServer, pki: Pki) -> None:
    assert _info_error(mtls_server, tls=_tls(pki)).code == "UNAVAILABLE"


@needs_openssl
def test_mutual_tls_refuses_a_certificate_from_another_ca(mtls_server: RunningServer, pki: Pki) -> None:
    tls = _tls(pki, client=(pki.other_client_cert, pki.other_client_key))
    assert _info_error(mtls_server, tls=tls).code == "UNAVAILABLE"


@needs_openssl
def test_mutual_tls_refuses_a_plaintext_client(mtls_server: RunningServer) -> None:
    assert _info_error(mtls_server).code == "UNAVAILABLE"


@needs_openssl
def test_mutual_tls_still_serves_after_refusals(mtls_server: RunningServer, pki: Pki) -> None:
    _info_error(mtls_server, tls=_tls(pki))
    tls = _tls(pki, client=(pki.client_cert, pki.client_key))
    with connect(_target(mtls_server), tls=tls, timeout=10) as client:
        assert client.info().image_count == PHOTOS


# --- 4. TLS and a token together -----------------------------------------------------------------------


@needs_openssl
def test_tls_and_token_need_both(tls_token_server: RunningServer, pki: Pki) -> None:
    assert _info_error(tls_token_server, tls=_tls(pki)).code == "UNAUTHENTICATED"
    assert _info_error(tls_token_server, tls=_tls(pki), token="wrong").code == "UNAUTHENTICATED"
    assert _info_error(tls_token_server, token=TOKEN).code == "UNAVAILABLE"  # the token, but in plaintext
    with connect(_target(tls_token_server), tls=_tls(pki), token=TOKEN, timeout=10) as client:
        assert client.info().latent_dim == 128


@needs_openssl
def test_health_over_tls_needs_no_token(tls_token_server: RunningServer, pki: Pki) -> None:
    credentials = grpc.ssl_channel_credentials(pki.ca.read_bytes())
    with grpc.secure_channel(_target(tls_token_server), credentials) as channel:
        assert _health(channel, SERVICE) == health_pb2.HealthCheckResponse.SERVING


# --- 5. reflection -------------------------------------------------------------------------------------


def test_a_generic_client_finds_and_calls_the_service_by_reflection(
    plain_server: RunningServer, codec: LatentCodec
) -> None:
    with grpc.insecure_channel(_target(plain_server)) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert {SERVICE, HEALTH, REFLECTION} <= services
        pool = descriptor_pool.DescriptorPool(database)
        service = pool.FindServiceByName(SERVICE)
        assert set(service.methods_by_name) == METHODS
        method = service.methods_by_name["GetInfo"]
        assert method.input_type.full_name == "latentdex.v1.GetInfoRequest"
        request_class = message_factory.GetMessageClass(method.input_type)
        reply_class = message_factory.GetMessageClass(method.output_type)
        get_info = channel.unary_unary(
            f"/{SERVICE}/GetInfo",
            request_serializer=request_class.SerializeToString,
            response_deserializer=reply_class.FromString,
        )
        reply = get_info(request_class(), timeout=10)
    assert reply.DESCRIPTOR.file.pool is pool  # built from the reflected descriptors, not the generated stubs
    assert reply.model_id == codec.model_id
    assert reply.latent_dim == 128
    assert reply.image_count == PHOTOS


def test_reflection_describes_the_health_service(plain_server: RunningServer) -> None:
    with grpc.insecure_channel(_target(plain_server)) as channel:
        pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
        assert {"Check", "Watch"} <= set(pool.FindServiceByName(HEALTH).methods_by_name)


# --- 6. health -----------------------------------------------------------------------------------------


def test_health_serves_then_stops_answering_after_stop(engine: QueryEngine) -> None:
    running = start_server(engine, ServerConfig(port=0, max_workers=2))
    try:
        with grpc.insecure_channel(_target(running)) as channel:
            assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
            assert _health(channel, SERVICE) == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.RpcError) as unknown:
                _health(channel, "no.such.Service")
            assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        running.stop(0)
    running.stop(0)  # a second stop is harmless
    with grpc.insecure_channel(_target(running)) as channel, pytest.raises(grpc.RpcError) as gone:
        _health(channel)
    assert gone.value.code() == grpc.StatusCode.UNAVAILABLE
    assert _info_error(running).code == "UNAVAILABLE"


def test_health_watchers_see_not_serving_when_the_server_stops(engine: QueryEngine) -> None:
    running = start_server(engine, ServerConfig(port=0, max_workers=2))
    stopping = threading.Thread(target=running.stop, args=(1.0,))
    try:
        with grpc.insecure_channel(_target(running)) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=SERVICE), timeout=10
            )
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            stopping.start()
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()
    finally:
        if stopping.is_alive():
            stopping.join()
        running.stop(0)


def test_an_empty_token_is_refused_not_taken_as_no_check(engine: QueryEngine) -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        start_server(engine, ServerConfig(port=0, token=""))


def test_wait_says_whether_the_server_stopped(engine: QueryEngine) -> None:
    running = start_server(engine, ServerConfig(port=0, max_workers=2))
    try:
        assert running.wait(timeout=0.1) is False  # still serving: the wait timed out
    finally:
        running.stop(0)
    assert running.wait(timeout=5) is True


# --- 7. binding ----------------------------------------------------------------------------------------


def test_the_default_host_is_loopback() -> None:
    assert ServerConfig().host == "127.0.0.1"


@pytest.mark.skipif(sys.platform != "linux", reason="needs 127.0.0.2 to be a local address (Linux)")
def test_a_server_listens_on_127_0_0_1_only_by_default(plain_server: RunningServer) -> None:
    # on Linux all of 127/8 is local: a server bound to every address would accept on 127.0.0.2 too
    with socket.create_connection(("127.0.0.1", plain_server.port), timeout=REFUSED_TIMEOUT):
        pass
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", plain_server.port), timeout=REFUSED_TIMEOUT).close()


def test_a_second_server_on_a_port_in_use_fails(plain_server: RunningServer, engine: QueryEngine) -> None:
    with pytest.raises(RuntimeError, match="cannot listen"):
        second = start_server(engine, ServerConfig(port=plain_server.port))
        second.stop(0)  # only reached if the bind wrongly succeeded
    with connect(_target(plain_server), timeout=10) as client:
        assert client.info().latent_dim == 128  # the first server is untouched


def test_a_port_held_by_another_program_fails(engine: QueryEngine) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        with pytest.raises(RuntimeError, match="cannot listen"):
            second = start_server(engine, ServerConfig(port=holder.getsockname()[1]))
            second.stop(0)
