"""Property-based fuzzing of every RPC against a real server: requests built from the proto's descriptors.

Each request mixes random and boundary values: unknown enum numbers, empty and huge repeated fields,
integer extremes (ids of 0 and 2^63-1), NaN and infinities, long and odd Unicode, random bytes beside a
real image, nested messages left unset. After each call: the status is never UNKNOWN or INTERNAL, the
health check answers SERVING, and the store is unchanged except by a direction call that succeeded.

A fixed seed and `FUZZ_EXAMPLES` examples per RPC in `make test`; `make fuzz` runs many more
(LATENTDEX_FUZZ_EXAMPLES, and LATENTDEX_FUZZ_SEED for another sequence).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from conftest import shape_image
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from serve_support import served_shapes

from latentdex.service.limits import Limits
from latentdex.service.server import RunningServer
from latentdex.service.server_config import ServerConfig
from latentdex.v1 import latentdex_pb2 as pb
from latentdex.v1 import latentdex_pb2_grpc as pb_grpc

FUZZ_EXAMPLES = int(os.environ.get("LATENTDEX_FUZZ_EXAMPLES", "60"))
FUZZ_SEED = int(os.environ.get("LATENTDEX_FUZZ_SEED", "20261129"))
CALL_TIMEOUT = 30.0
SERVICE = pb.DESCRIPTOR.services_by_name["Latentdex"]
MUTATING = {"CreateDirection", "DeleteDirection"}
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
HUGE = 20_000  # length of a "huge" repeated scalar field
LATENT_DIM = 128  # the shipped model's: repeated floats of this length are valid latents
MAX_DEPTH = 3

T = FieldDescriptor
INT_RANGES = {
    T.TYPE_INT32: (-(2**31), 2**31 - 1),
    T.TYPE_SINT32: (-(2**31), 2**31 - 1),
    T.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    T.TYPE_INT64: (-(2**63), 2**63 - 1),
    T.TYPE_SINT64: (-(2**63), 2**63 - 1),
    T.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    T.TYPE_UINT32: (0, 2**32 - 1),
    T.TYPE_FIXED32: (0, 2**32 - 1),
    T.TYPE_UINT64: (0, 2**64 - 1),
    T.TYPE_FIXED64: (0, 2**64 - 1),
}


def _png() -> bytes:
    buffer = io.BytesIO()
    shape_image(3, 1, 48).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()
ODD_TEXT = [
    "",
    " ",
    "../../etc/passwd",
    "*",
    "[",
    "\x00",
    "é" * 300,
    "\U0001d518\U0001d52b\u0301\u200d",  # astral letters, a combining mark, a zero-width joiner
    "\u202e" + "x" * 70,
    "a" * 5000,
]


def integers(field: FieldDescriptor, wild: bool) -> st.SearchStrategy[int]:
    low, high = INT_RANGES[field.type]
    plausible = st.integers(1, 12)  # counts, steps, k, sizes' low end, and the store's ids
    if not wild:
        return plausible
    edges = sorted({low, high, 0, 1, min(high, 2**63 - 1), max(low, -1)})
    return st.one_of(plausible, st.sampled_from(edges), st.integers(low, high))


def scalar(field: FieldDescriptor, wild: bool) -> st.SearchStrategy[object]:
    """Values for one field: plausible ones only, or (`wild`) also edges, garbage and unknown enums."""
    if field.type in INT_RANGES:
        return integers(field, wild)
    if field.type in (T.TYPE_FLOAT, T.TYPE_DOUBLE):
        width = 32 if field.type == T.TYPE_FLOAT else 64
        plausible = st.floats(0.125, 2, width=width)
        if not wild:
            return plausible
        edges = [0.0, -0.0, 1.0, -1.0, float("nan"), float("inf"), float("-inf"), 3.4e38, 1e-45]
        return st.one_of(plausible, st.sampled_from(edges), st.floats(width=width))
    if field.type == T.TYPE_BOOL:
        return st.booleans()
    if field.type == T.TYPE_STRING:
        if not wild:
            return st.sampled_from(["", "p0*", "fuzz-direction", "p"])
        text = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)
        return st.one_of(st.sampled_from(ODD_TEXT), text)
    if field.type == T.TYPE_BYTES:
        if not wild:
            return st.just(PNG)
        return st.one_of(st.just(PNG), st.just(PNG[:60]), st.binary(max_size=64), st.just(b""))
    if field.type == T.TYPE_ENUM:
        known = st.sampled_from([value.number for value in field.enum_type.values])
        return st.one_of(known, st.integers(-(2**31), 2**31 - 1), st.integers(0, 200)) if wild else known
    raise AssertionError(f"no strategy for field type {field.type}")  # pragma: no cover


@st.composite
def message_of(draw: st.DrawFn, descriptor: Descriptor, wild: bool, depth: int = 0) -> Message:
    """A message of `descriptor`: each field set or left unset, one field at most per oneof."""
    instance = message_factory.GetMessageClass(descriptor)()
    unset = [None] if wild else []
    chosen_oneof = {oneof.name: draw(st.sampled_from([*unset, *oneof.fields])) for oneof in descriptor.oneofs}
    for field in descriptor.fields:
        is_message = field.type == T.TYPE_MESSAGE
        if field.containing_oneof is not None and chosen_oneof[field.containing_oneof.name] is not field:
            continue
        if field.containing_oneof is None and (wild or not is_message) and draw(st.booleans()):
            continue  # left unset (a plausible request sets every message field)
        if is_message and depth >= MAX_DEPTH:
            continue
        if field.is_repeated:
            if is_message:
                items = draw(st.lists(message_of(field.message_type, wild, depth + 1), max_size=3))
                getattr(instance, field.name).extend(items)
            else:
                if wild:
                    sizes = [0, 1, 3, 40, LATENT_DIM, HUGE]
                else:
                    sizes = [LATENT_DIM] if descriptor.name == "Latent" else [1, 2]
                size = draw(st.sampled_from(sizes))
                if size == HUGE:
                    values = [draw(scalar(field, wild))] * size
                else:
                    values = draw(st.lists(scalar(field, wild), min_size=size, max_size=size))
                getattr(instance, field.name).extend(values)
        elif is_message:
            getattr(instance, field.name).CopyFrom(draw(message_of(field.message_type, wild, depth + 1)))
        else:
            setattr(instance, field.name, draw(scalar(field, wild)))
    return instance


def requests_for(descriptor: Descriptor) -> st.SearchStrategy[Message]:
    """Half plausible requests (to reach the handlers' real work), half wild ones."""
    return st.booleans().flatmap(lambda wild: message_of(descriptor, wild))


# --- the server -----------------------------------------------------------------------------------------


@dataclass
class Fuzzed:
    store: Path
    running: RunningServer
    channel: grpc.Channel

    def fingerprint(self) -> tuple[str, str, str]:
        """(vectors, manifest counts, images) of the store: what no call but a direction call may change."""
        vectors = hashlib.sha256((self.store / "vectors.faiss").read_bytes()).hexdigest()
        manifest = json.loads((self.store / "manifest.json").read_text())
        counts = f"{manifest['image_count']}/{manifest['failed_count']}/{manifest['model_id']}"
        with sqlite3.connect(f"file:{self.store / 'catalog.sqlite'}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT id, path, status, content_hash, latent FROM images ORDER BY id"
            ).fetchall()
        return vectors, counts, hashlib.sha256(repr(rows).encode()).hexdigest()

    def directions(self) -> list[tuple]:
        with sqlite3.connect(f"file:{self.store / 'catalog.sqlite'}?mode=ro", uri=True) as db:
            return db.execute("SELECT name, model_id FROM directions ORDER BY name").fetchall()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fuzzed]:
    limits = Limits(max_preview_size=128, max_k=200, max_batch=64)
    config = ServerConfig(port=0, max_workers=4, max_message_bytes=8 * 1024 * 1024)
    with served_shapes(tmp_path_factory.mktemp("fuzz"), limits, config) as (store, running, channel):
        yield Fuzzed(store, running, channel)


@pytest.mark.slow
@pytest.mark.parametrize("rpc", [method.name for method in SERVICE.methods])
def test_no_request_gets_unknown_or_internal_or_changes_what_it_must_not(fuzzed: Fuzzed, rpc: str) -> None:
    method = SERVICE.methods_by_name[rpc]
    call = getattr(pb_grpc.LatentdexStub(fuzzed.channel), rpc)
    health = health_pb2_grpc.HealthStub(fuzzed.channel)
    before = fuzzed.fingerprint()

    @seed(FUZZ_SEED)
    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(request=requests_for(method.input_type))
    def one_request(request: Message) -> None:
        directions = fuzzed.directions()
        code = grpc.StatusCode.OK
        try:
            call(request, timeout=CALL_TIMEOUT)
        except grpc.RpcError as exc:
            code = exc.code()
            assert code not in FORBIDDEN, f"{rpc}: {code.name}: {exc.details()}"
        status = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        assert fuzzed.fingerprint() == before, f"{rpc} changed the store's images or vectors"
        if rpc not in MUTATING or code != grpc.StatusCode.OK:
            assert fuzzed.directions() == directions, f"{rpc} ({code.name}) changed the directions"

    one_request()
