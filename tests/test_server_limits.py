"""Every value a client can send is answered: open enums, oversized repeated fields, cancelled and
abandoned heavy calls, and a SIGTERM while one runs. A real server on a loopback port, raw stubs."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from serve_support import serve_process, served_shapes

from latentdex.service.convert import MAX_GROUP_GLOBS, MAX_GROUP_IDS
from latentdex.service.latent_features import MAX_FRAMES, MAX_TRAVERSE_DIMENSIONS
from latentdex.service.limits import Limits
from latentdex.service.server import RunningServer
from latentdex.service.server_config import ServerConfig
from latentdex.v1 import latentdex_pb2 as pb
from latentdex.v1 import latentdex_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[1]
HEAVY_PREVIEW = 512  # frames encoded as 512-px PNGs: a traverse of MAX_FRAMES takes seconds


@dataclass
class Served:
    store: Path
    running: RunningServer
    stub: pb_grpc.LatentdexStub
    channel: grpc.Channel


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    limits = Limits(max_preview_size=HEAVY_PREVIEW)
    config = ServerConfig(port=0, max_workers=1, max_concurrent_rpcs=8)
    with served_shapes(tmp_path_factory.mktemp("limits"), limits, config) as (store, running, channel):
        yield Served(store, running, pb_grpc.LatentdexStub(channel), channel)


def first_id(stub: pb_grpc.LatentdexStub) -> int:
    return stub.RenderMap(pb.RenderMapRequest(columns=2, rows=2, cell=16)).cells[0].id


def assert_invalid(call, request, *fragments: str) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
    for fragment in fragments:
        assert fragment in caught.value.details(), caught.value.details()
    assert time.monotonic() - started < 2, "refused only after doing the work"


def test_unknown_enum_numbers_are_invalid_argument_naming_the_field(served: Served) -> None:
    stub = served.stub
    image_id = first_id(stub)
    here = pb.Query(id=image_id)
    assert_invalid(stub.Generate, pb.GenerateRequest(count=1, source=57), "source", "SAMPLE_SOURCE_PRIOR")
    assert_invalid(
        stub.Interpolate, pb.InterpolateRequest(start=here, end=here, method=9), "method", "PATH_METHOD_SLERP"
    )
    group = pb.ImageGroup(ids=[image_id])
    assert_invalid(
        stub.CreateDirection,
        pb.CreateDirectionRequest(name="d", positive=group, negative=group, method=34),
        "method",
        "DIRECTION_METHOD_PROBE",
    )
    assert_invalid(stub.Decode, pb.DecodeRequest(latent=pb.Latent(values=[0.0] * 128), format=7), "format")
    assert_invalid(
        stub.Generate, pb.GenerateRequest(count=1, frames=pb.FrameOptions(format=99)), "frames.format"
    )
    options = pb.QueryOptions(k=1, preview=pb.PreviewOptions(matches=True, format=-3))
    assert_invalid(stub.QueryById, pb.QueryByIdRequest(id=image_id, options=options), "preview.format")
    # known values still work, and the server is serving
    assert len(stub.Generate(pb.GenerateRequest(count=2, source=pb.SAMPLE_SOURCE_PRIOR)).frames) == 2
    path = stub.Interpolate(
        pb.InterpolateRequest(start=here, end=here, method=pb.PATH_METHOD_LINEAR, steps=3)
    )
    assert len(path.frames) == 3


def test_oversized_requests_are_refused_before_any_work(served: Served) -> None:
    stub = served.stub
    here = pb.Query(id=first_id(stub))
    assert_invalid(
        stub.Traverse, pb.TraverseRequest(source=here, dimensions=list(range(128)) * 400), "at most"
    )
    values = [0.1] * (MAX_FRAMES // MAX_TRAVERSE_DIMENSIONS + 1)
    assert_invalid(
        stub.Traverse,
        pb.TraverseRequest(source=here, dimensions=list(range(MAX_TRAVERSE_DIMENSIONS)), values=values),
        f"at most {MAX_FRAMES}",
    )
    assert_invalid(stub.RenderMap, pb.RenderMapRequest(columns=64, rows=64, cell=256), "pixel cap")
    huge_ids = pb.ImageGroup(ids=list(range(1, MAX_GROUP_IDS + 2)))
    small = pb.ImageGroup(ids=[here.id])
    assert_invalid(
        stub.CreateDirection, pb.CreateDirectionRequest(name="d", positive=huge_ids, negative=small), "ids"
    )
    globs = pb.ImageGroup(path_globs=["*"] * (MAX_GROUP_GLOBS + 1))
    assert_invalid(
        stub.CreateDirection,
        pb.CreateDirectionRequest(name="d", positive=globs, negative=small),
        "path_globs",
    )
    frames = pb.FrameOptions(nearest_k=1000)
    assert_invalid(
        stub.Interpolate,
        pb.InterpolateRequest(start=here, end=here, steps=200, frames=frames),
        "nearest",
    )


def heavy_traverse(image_id: int) -> pb.TraverseRequest:
    return pb.TraverseRequest(
        source=pb.Query(id=image_id),
        dimensions=list(range(MAX_TRAVERSE_DIMENSIONS)),
        values=[v / 4 for v in range(MAX_FRAMES // MAX_TRAVERSE_DIMENSIONS)],
        format=pb.IMAGE_FORMAT_JPEG,
        size=HEAVY_PREVIEW,
    )


def test_a_cancelled_heavy_call_frees_its_worker_within_a_second(served: Served) -> None:
    stub = served.stub
    request = heavy_traverse(first_id(stub))
    started = time.monotonic()
    stub.Traverse(request, timeout=120)  # the server has one worker: measure the call alone first
    alone = time.monotonic() - started
    assert alone > 2.5, f"the heavy call took {alone:.1f} s: too light to show anything"
    future = stub.Traverse.future(request, timeout=120)
    time.sleep(0.5)
    future.cancel()
    cancelled = time.monotonic()
    stub.GetInfo(pb.GetInfoRequest(), timeout=30)  # queued behind the heavy call on the one worker
    assert time.monotonic() - cancelled < 1.0 + 0.3


def test_a_call_past_its_deadline_stops_between_batches(served: Served) -> None:
    stub = served.stub
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as caught:
        stub.Traverse(heavy_traverse(first_id(stub)), timeout=0.5)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    stub.GetInfo(pb.GetInfoRequest(), timeout=30)
    assert time.monotonic() - started < 0.5 + 1.3


def test_sigterm_during_a_heavy_call_ends_the_process_within_grace_and_a_second(served: Served) -> None:
    grace = 1.0
    options = ("--grace", str(grace), "--max-preview-size", str(HEAVY_PREVIEW))
    with serve_process(served.store, *options) as (process, port):
        channel_options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options) as channel:
            stub = pb_grpc.LatentdexStub(channel)
            request = heavy_traverse(first_id(stub))
            futures = [stub.Traverse.future(request, timeout=120) for _ in range(2)]
            time.sleep(0.7)
            process.send_signal(signal.SIGTERM)
            sent = time.monotonic()
            process.wait(timeout=30)
            took = time.monotonic() - sent
            assert took < grace + 1.0, (took, process.stdout.read() if process.stdout else "")
            for future in futures:
                with pytest.raises(grpc.RpcError):
                    future.result()
