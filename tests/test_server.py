"""The gRPC server end to end: a real server on a loopback port over a real store, through the client."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import faiss
import grpc
import numpy as np
import pytest
from conftest import shape_image
from PIL import Image
from serve_support import serve_process

from latentdex.indexer.pipeline import IndexOptions, index_folder
from latentdex.indexer.search_filter import SearchFilter
from latentdex.indexer.store import LatentStore
from latentdex.models.inference import LatentCodec
from latentdex.service.client import LatentdexClient, QueryOptions, ServerError, connect
from latentdex.service.limits import Limits
from latentdex.service.live_store import LiveStore
from latentdex.service.queries import QueryEngine
from latentdex.service.server import RunningServer, rpc_executor, start_server
from latentdex.service.server_config import ServerConfig
from latentdex.v1 import latentdex_pb2 as pb
from latentdex.v1 import latentdex_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[1]
PIXEL_CAP = 200_000
MESSAGE_CAP = 2 * 1024 * 1024
ALBUM, TRAVEL = 24, 8


def write_library(root: Path) -> None:
    """`album/`: PNGs; `travel/`: 96x72 JPEGs with an EXIF capture time (June 2021, one a day) and camera."""
    (root / "album").mkdir(parents=True)
    (root / "travel").mkdir()
    for i in range(ALBUM):
        shape_image(i, i % 4, 64).save(root / "album" / f"a{i:02d}.png")
    for i in range(TRAVEL):
        exif = Image.Exif()
        exif[0x010F], exif[0x0110] = "Acme", f"Model {i}"
        exif.get_ifd(0x8769)[0x9003] = f"2021:06:{i + 1:02d} 12:00:00"
        shape_image(100 + i, i, 96).resize((96, 72)).save(
            root / "travel" / f"t{i}.jpg", quality=95, exif=exif
        )


@dataclass
class Served:
    photos: Path
    store: Path
    codec: LatentCodec
    running: RunningServer
    engine: QueryEngine

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    def client(self, **settings: object) -> LatentdexClient:
        return connect(self.target, **settings)  # type: ignore[arg-type]

    def id_of(self, path: str) -> int:
        with LatentStore.open(self.store, read_only=True) as store:
            return int(store.get_by_path(path).id or 0)


def serve(engine: QueryEngine, **config: object) -> RunningServer:
    return start_server(engine, ServerConfig(port=0, max_message_bytes=MESSAGE_CAP, **config))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def codec() -> LatentCodec:
    return LatentCodec.load()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, codec: LatentCodec) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("served")
    write_library(root / "photos")
    report = index_folder(root / "photos", root / "store", codec, IndexOptions(workers=1))
    assert report.counts.new == ALBUM + TRAVEL and report.counts.failed == 0
    live = LiveStore(root / "store", check_interval=0.05)
    engine = QueryEngine(codec, live, Limits(max_image_pixels=PIXEL_CAP, max_preview_size=256))
    running = serve(engine)
    yield Served(root / "photos", root / "store", codec, running, engine)
    running.stop(0)
    live.close()


@pytest.fixture
def client(served: Served) -> Iterator[LatentdexClient]:
    with served.client() as opened:
        yield opened


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_info_describes_model_store_and_limits(client: LatentdexClient, served: Served) -> None:
    info = client.info()
    assert info.model_id == served.codec.model_id and info.latent_dim == 128 and info.image_size == 64
    assert info.has_store and info.image_count == ALBUM + TRAVEL
    assert (info.metric, info.index_type, info.vector_kind) == ("whitened", "flat", "flat")
    assert info.store_updated_at is not None and info.store_updated_at.year >= 2024
    assert (info.max_k, info.max_preview_size, info.max_image_pixels) == (1000, 256, PIXEL_CAP)


def test_encode_is_the_models_posterior(client: LatentdexClient, served: Served) -> None:
    path = served.photos / "album" / "a03.png"
    mu, logvar = client.encode_posterior(path)
    expected_mu, expected_logvar = served.codec.encode_posterior(np.asarray(Image.open(path))[None])
    np.testing.assert_allclose(mu, expected_mu[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(logvar, expected_logvar[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(client.encode(path.read_bytes()), mu)


@pytest.mark.parametrize(("image_format", "size"), [("PNG", 0), ("JPEG", 100), ("WEBP", 256)])
def test_decode_returns_an_image_of_the_asked_format_and_size(
    client: LatentdexClient, served: Served, image_format: str, size: int
) -> None:
    latent = client.encode(served.photos / "album" / "a05.png")
    picture = client.decode(latent, image_format, size)
    with Image.open(io.BytesIO(picture.data)) as decoded:
        assert decoded.format == image_format
        assert decoded.size == (size or 64, size or 64) == (picture.width, picture.height)
    expected = served.codec.decode(latent[None])[0]
    if image_format == "PNG":
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(picture.data))), expected)


def test_query_by_image_finds_itself_with_metadata_previews_and_thumbnails(
    client: LatentdexClient, served: Served
) -> None:
    options = QueryOptions(previews=True, query_preview=True, thumbnails=True, preview_size=128)
    path = served.photos / "travel" / "t2.jpg"
    result = client.query_by_image(path, 5, options)
    assert len(result.matches) == 5
    top = result.matches[0]
    assert top.path == "travel/t2.jpg" and top.distance < 1e-4 and top.similarity > 0.9999
    by_latent = client.query_by_image(path, 5, QueryOptions(ranking="latent"))
    assert [m.distance for m in by_latent.matches] == sorted(m.distance for m in by_latent.matches)
    assert {m.id for m in by_latent.matches} <= {m.id for m in client.query_by_image(path, 20).matches}
    meta = top.metadata
    assert (meta.width, meta.height, meta.format) == (96, 72, "JPEG")
    assert meta.capture_time == datetime(2021, 6, 3, 12, 0, 0)
    assert (meta.camera_make, meta.camera_model) == ("Acme", "Model 2")
    assert meta.size_bytes == (served.photos / "travel" / "t2.jpg").stat().st_size
    assert meta.model_id == served.codec.latent_space_id and meta.indexed_at is not None
    for match in result.matches:
        assert match.preview is not None and (match.preview.width, match.preview.height) == (128, 128)
        assert match.thumbnail is not None and max(match.thumbnail.width, match.thumbnail.height) <= 128
    assert (top.thumbnail.width, top.thumbnail.height) == (96, 72)  # never enlarged, aspect kept
    assert result.query_preview is not None and result.query_preview.width == 128
    np.testing.assert_allclose(
        result.query_latent, client.encode(served.photos / "travel" / "t2.jpg"), atol=1e-5
    )
    assert result.timings["encode"] > 0 and result.timings["search"] > 0 and result.timings["preview"] > 0
    assert result.timings["total"] >= result.timings["encode"] + result.timings["search"]


def test_a_stored_latent_leads_back_to_its_image(client: LatentdexClient) -> None:
    first = client.query_by_image(png_bytes(shape_image(7, 3, 64)), 3, QueryOptions(include_latents=True))
    for match in first.matches:
        assert match.latent is not None and match.latent.shape == (128,)
        again = client.query_by_latent(match.latent, 1)
        assert again.matches[0].id == match.id and again.matches[0].distance < 1e-5


def test_query_by_id_leaves_the_image_itself_out_unless_asked(
    client: LatentdexClient, served: Served
) -> None:
    image_id = served.id_of("album/a10.png")
    others = client.query_by_id(image_id, 4)
    assert len(others.matches) == 4 and image_id not in [m.id for m in others.matches]
    with_self = client.query_by_id(image_id, 4, include_self=True)
    assert with_self.matches[0].id == image_id and with_self.matches[0].distance < 1e-5
    assert [m.id for m in with_self.matches[1:]] == [m.id for m in others.matches[:3]]


def test_a_batch_answers_like_single_queries(client: LatentdexClient, served: Served) -> None:
    image = served.photos / "album" / "a01.png"
    latent = client.encode(served.photos / "travel" / "t5.jpg")
    image_id = served.id_of("album/a20.png")
    batch = client.query_batch([image, latent, image_id], 6)
    singles = [
        client.query_by_image(image, 6),
        client.query_by_latent(latent, 6),
        client.query_by_id(image_id, 6),
    ]
    assert len(batch) == 3
    for together, alone in zip(batch, singles, strict=True):
        assert [m.id for m in together.matches] == [m.id for m in alone.matches]
        np.testing.assert_allclose(
            [m.distance for m in together.matches], [m.distance for m in alone.matches], atol=1e-5
        )


def test_filters_return_k_matches_that_pass(client: LatentdexClient, served: Served) -> None:
    query = served.photos / "album" / "a00.png"  # nearest images are album PNGs, so filters must dig
    travel = client.query_by_image(query, 5, QueryOptions(where=SearchFilter(path_prefix="travel/")))
    assert len(travel.matches) == 5 and all(m.path.startswith("travel/") for m in travel.matches)
    june = SearchFilter(captured_after=datetime(2021, 6, 3), captured_before=datetime(2021, 6, 6))
    dated = client.query_by_image(query, 10, QueryOptions(where=june))
    assert sorted(m.path for m in dated.matches) == ["travel/t2.jpg", "travel/t3.jpg", "travel/t4.jpg"]
    wide = client.query_by_image(query, 10, QueryOptions(where=SearchFilter(min_width=90, min_height=70)))
    assert len(wide.matches) == TRAVEL and all(m.metadata.width == 96 for m in wide.matches)
    pngs = client.query_by_image(query, 30, QueryOptions(where=SearchFilter(formats=frozenset({"png"}))))
    assert len(pngs.matches) == ALBUM and {m.metadata.format for m in pngs.matches} == {"PNG"}
    unfiltered = client.query_by_image(query, 32)
    expected = [m.id for m in unfiltered.matches if m.path.startswith("travel/")][:5]
    assert [m.id for m in travel.matches] == expected  # the same order the unfiltered search gives them


def _raw_stub(served: Served) -> tuple[grpc.Channel, pb_grpc.LatentdexStub]:
    channel = grpc.insecure_channel(
        served.target, options=[("grpc.max_send_message_length", 4 * MESSAGE_CAP)]
    )
    return channel, pb_grpc.LatentdexStub(channel)


BAD_CALLS: dict[str, tuple[str, str, Callable[[LatentdexClient, Served], object]]] = {
    "short latent": ("INVALID_ARGUMENT", "128 values", lambda c, s: c.query_by_latent(np.zeros(5), 3)),
    "long latent": ("INVALID_ARGUMENT", "128 values", lambda c, s: c.decode(np.ones(300))),
    "NaN latent": ("INVALID_ARGUMENT", "NaN", lambda c, s: c.query_by_latent(np.full(128, np.nan), 3)),
    "Inf latent": ("INVALID_ARGUMENT", "infinite", lambda c, s: c.decode(np.full(128, np.inf))),
    "k too large": ("INVALID_ARGUMENT", "k must be", lambda c, s: c.query_by_latent(np.ones(128), 5000)),
    "k negative": ("INVALID_ARGUMENT", "k must be", lambda c, s: c.query_by_latent(np.ones(128), -2)),
    "not an image": ("INVALID_ARGUMENT", "", lambda c, s: c.query_by_image(b"this is not an image", 3)),
    "no bytes": ("INVALID_ARGUMENT", "no image", lambda c, s: c.encode(b"")),
    "truncated": (
        "INVALID_ARGUMENT",
        "",
        lambda c, s: c.query_by_image((s.photos / "travel" / "t1.jpg").read_bytes()[:300], 3),
    ),
    "over the pixel cap": (
        "INVALID_ARGUMENT",
        "pixel",
        lambda c, s: c.query_by_image(png_bytes(Image.new("RGB", (600, 600))), 3),
    ),
    "preview too large": (
        "INVALID_ARGUMENT",
        "preview size",
        lambda c, s: c.query_by_latent(np.ones(128), 3, QueryOptions(previews=True, preview_size=5000)),
    ),
    "bad filter": (
        "INVALID_ARGUMENT",
        "filter",
        lambda c, s: c._call(
            c._stub.QueryByLatent,
            pb.QueryByLatentRequest(
                latent=pb.Latent(values=[1.0] * 128),
                options=pb.QueryOptions(filter=pb.Filter(path_prefix="/etc")),
            ),
        ),
    ),
    "unknown id": ("NOT_FOUND", "no indexed image", lambda c, s: c.query_by_id(987654, 3)),
    "empty batch": ("INVALID_ARGUMENT", "no query", lambda c, s: c.query_batch([], 3)),
    "empty query in a batch": (
        "INVALID_ARGUMENT",
        "queries[1]",
        lambda c, s: c._call(
            c._stub.QueryBatch,
            pb.QueryBatchRequest(queries=[pb.Query(id=1), pb.Query()]),
        ),
    ),
    "bad image in a batch": (
        "INVALID_ARGUMENT",
        "queries[1]",
        lambda c, s: c.query_batch([np.ones(128, np.float32), b"garbage"], 3),
    ),
    "oversized message": (
        "RESOURCE_EXHAUSTED",
        "",
        lambda c, s: c.query_by_image(os.urandom(MESSAGE_CAP + 1024), 3),
    ),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_requests_get_a_clear_status_and_the_server_keeps_serving(
    served: Served, codec: LatentCodec, case: str
) -> None:
    code, words, call = BAD_CALLS[case]
    with served.client(max_message_bytes=4 * MESSAGE_CAP) as client:
        with pytest.raises(ServerError) as refused:
            call(client, served)
        assert refused.value.code == code, refused.value
        assert words.lower() in refused.value.details.lower()
        assert client.info().image_count == ALBUM + TRAVEL  # still serving
        assert client.query_by_latent(np.ones(128, np.float32), 2).matches


def test_an_empty_store_and_a_missing_store_are_failed_precondition(
    tmp_path: Path, codec: LatentCodec
) -> None:
    LatentStore.create(tmp_path / "empty", model_id=codec.model_id, latent_dim=codec.latent_dim).close()
    for folder, words in ((tmp_path / "empty", "no indexed image"), (tmp_path / "missing", "no store")):
        live = LiveStore(folder)
        running = serve(QueryEngine(codec, live))
        try:
            with connect(f"127.0.0.1:{running.port}") as client:
                with pytest.raises(ServerError) as refused:
                    client.query_by_latent(np.ones(128), 3)
                assert refused.value.code == "FAILED_PRECONDITION" and words in refused.value.details
                assert client.encode(png_bytes(shape_image(1, 1, 64))).shape == (
                    128,
                )  # the model still serves
                assert client.info().has_store == (folder.name == "empty")
        finally:
            running.stop(0)
            live.close()


def test_a_passed_deadline_is_deadline_exceeded_and_harmless(served: Served) -> None:
    with served.client(timeout=0.0001) as hurried, pytest.raises(ServerError) as late:
        hurried.query_by_image(served.photos / "travel" / "t0.jpg", 10, QueryOptions(previews=True))
    assert late.value.code == "DEADLINE_EXCEEDED"
    with served.client() as client:
        assert (
            client.query_by_image(served.photos / "travel" / "t0.jpg", 1).matches[0].path == "travel/t0.jpg"
        )


def test_a_store_updated_by_the_indexer_is_picked_up_without_failing_queries(
    tmp_path: Path, codec: LatentCodec
) -> None:
    photos, store = tmp_path / "photos", tmp_path / "store"
    photos.mkdir()
    for i in range(12):
        shape_image(i, 0, 64).save(photos / f"old{i:02d}.png")
    index_folder(photos, store, codec, IndexOptions(workers=1))
    live = LiveStore(store, check_interval=0.02)
    running = serve(QueryEngine(codec, live))
    errors: list[Exception] = []
    answered = 0
    stop = threading.Event()

    def keep_querying() -> None:
        nonlocal answered
        with connect(f"127.0.0.1:{running.port}") as client:
            latent = client.encode(photos / "old00.png")
            while not stop.is_set():
                try:
                    matches = client.query_by_latent(latent, 5, QueryOptions(previews=True)).matches
                    assert matches[0].path == "old00.png" and all(m.preview for m in matches)
                    answered += 1
                except Exception as exc:  # any failure is what this test is about
                    errors.append(exc)

    worker = threading.Thread(target=keep_querying)
    worker.start()
    try:
        for i in range(8):
            shape_image(200 + i, 2, 64).save(photos / f"new{i}.png")
        (photos / "old05.png").unlink()
        report = index_folder(photos, store, codec, IndexOptions(workers=1, batch_size=2, flush_every=1))
        assert report.counts.new == 8 and report.counts.deleted == 1
        with connect(f"127.0.0.1:{running.port}") as client:
            deadline = time.monotonic() + 10
            while client.info().image_count != 19 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert client.info().image_count == 19
            found = client.query_by_image(photos / "new3.png", 1).matches[0]
            assert found.path == "new3.png" and found.distance < 1e-4
            everything = client.query_by_latent(client.encode(photos / "new3.png"), 30).matches
            assert len(everything) == 19 and "old05.png" not in [m.path for m in everything]
    finally:
        stop.set()
        worker.join()
        running.stop(0)
        live.close()
    assert errors == [] and answered > 0
    assert live.reloads >= 1


def test_sixteen_concurrent_clients_of_200_queries_each_see_no_error(served: Served) -> None:
    with served.client() as client:
        targets = [
            (m.id, m.latent)
            for m in client.query_by_image(
                served.photos / "album" / "a00.png", 16, QueryOptions(include_latents=True)
            ).matches
        ]
    failures: list[str] = []
    counts = [0] * 16

    def one_client(number: int) -> None:
        image_id, latent = targets[number]
        assert latent is not None
        with served.client() as own:
            for i in range(200):
                try:
                    if i % 4 == 3:
                        matches = own.query_by_id(image_id, 3, include_self=True).matches
                    else:
                        matches = own.query_by_latent(latent, 3).matches
                    if matches[0].id != image_id:
                        failures.append(f"client {number}: got {matches[0].id}, not {image_id}")
                    counts[number] += 1
                except ServerError as exc:
                    failures.append(f"client {number}: {exc}")

    threads = [threading.Thread(target=one_client, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and counts == [200] * 16


def test_serve_command_answers_and_stops_gracefully_on_sigterm(served: Served) -> None:
    with serve_process(served.store) as (process, port):
        with connect(f"127.0.0.1:{port}") as client:
            assert (
                client.query_by_image(served.photos / "album" / "a02.png", 1).matches[0].path
                == "album/a02.png"
            )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


@pytest.mark.parametrize("count", [1, 3])
def test_every_rpc_thread_runs_faiss_on_the_configured_threads(count: int) -> None:
    """OpenMP's thread count is per thread: set once in the main thread, the RPC threads never see it."""
    with rpc_executor(ServerConfig(max_workers=4, faiss_threads=count)) as executor:
        seen = {executor.submit(faiss.omp_get_max_threads).result() for _ in range(16)}
    assert seen == {count}
