"""Copies first: the pixel-alignment check, and a real server ranking a cropped, re-encoded query's
original above the neighbouring crops of the same photo."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter
from typer.testing import CliRunner

from latentdex.indexer.pipeline import IndexOptions, index_folder
from latentdex.indexer.pixel_alignment import (
    COPY_NCC,
    DEPTH,
    SIDE,
    alignment_scores,
    alignment_thumbnail,
    copies_first,
    thumbnail_bytes,
    thumbnail_from_bytes,
)
from latentdex.indexer.store import ImageRecord, LatentStore
from latentdex.models.inference import LatentCodec
from latentdex.service.cli import app
from latentdex.service.client import LatentdexClient, QueryOptions, connect
from latentdex.service.live_store import LiveStore
from latentdex.service.queries import QueryEngine
from latentdex.service.server import RunningServer, start_server
from latentdex.service.server_config import ServerConfig
from latentdex.v1 import latentdex_pb2 as pb
from latentdex.v1 import latentdex_pb2_grpc as pb_grpc

TILE = 160  # tiles of a 480-px photo at half-tile steps: 25 per photo, each other's hard negatives
SIZE = 64


def textured_photo(seed: int, side: int = 480) -> Image.Image:
    """A photo-like picture: blurred noise at three scales in colour, so every crop of it differs."""
    rng = np.random.default_rng(seed)
    layers = []
    for cells in (6, 24, 96):
        noise = rng.random((cells, cells, 3)) * 255
        layer = Image.fromarray(noise.astype(np.uint8)).resize((side, side), Image.Resampling.BICUBIC)
        layers.append(np.asarray(layer, dtype=np.float32))
    pixels = 0.55 * layers[0] + 0.3 * layers[1] + 0.15 * layers[2]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1))


def crop_boxes(side: int, tile: int) -> list[tuple[int, int, int, int]]:
    """Square tiles of `tile` px at half-tile steps: each shares half its area with the next."""
    steps = range(0, side - tile + 1, tile // 2)
    return [(left, top, left + tile, top + tile) for top in steps for left in steps]


def altered_copy(image: Image.Image, share: float, seed: int) -> bytes:
    """`share` of the side, somewhere inside, brighter, re-encoded as a JPEG at quality 40."""
    rng = np.random.default_rng(seed)
    side = round(image.width * share)
    left, top = (int(v) for v in rng.integers(0, image.width - side + 1, 2))
    cropped = ImageEnhance.Brightness(image.crop((left, top, left + side, top + side))).enhance(1.15)
    buffer = io.BytesIO()
    cropped.save(buffer, format="JPEG", quality=40)
    return buffer.getvalue()


def model_input(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BOX))


# --- the alignment check ---------------------------------------------------------------------------


def test_a_crop_of_a_picture_aligns_with_it_and_not_with_another_picture() -> None:
    photo = textured_photo(1, 256)
    original = alignment_thumbnail(model_input(photo))
    crop = photo.crop((20, 12, 20 + 218, 12 + 218))  # 85% of the side
    query = alignment_thumbnail(model_input(crop))
    other = alignment_thumbnail(model_input(textured_photo(2, 256)))
    scores = alignment_scores(query, np.stack([original, other]))
    assert scores[0] > 0.9 and scores[1] < 0.5
    assert alignment_scores(original, original[None])[0] > 0.999  # a picture fits itself exactly


def test_brightness_and_contrast_cancel_out() -> None:
    photo = textured_photo(3, 128)
    original = alignment_thumbnail(model_input(photo))
    changed = ImageEnhance.Contrast(ImageEnhance.Brightness(photo).enhance(1.2)).enhance(0.8)
    score = alignment_scores(alignment_thumbnail(model_input(changed)), original[None])[0]
    assert score > 0.98


def test_flat_pictures_score_without_dividing_by_zero() -> None:
    flat = np.full((SIDE, SIDE), 128, np.uint8)
    textured = alignment_thumbnail(model_input(textured_photo(4, 128)))
    scores = np.concatenate(
        [alignment_scores(flat, np.stack([flat, textured])), alignment_scores(textured, flat[None])]
    )
    assert np.isfinite(scores).all() and (scores < COPY_NCC).all()
    assert alignment_scores(textured, np.empty((0, SIDE, SIDE), np.uint8)).shape == (0,)


def test_thumbnails_round_trip_as_bytes_and_wrong_bytes_are_refused() -> None:
    pixels = model_input(textured_photo(5, 100))
    data = thumbnail_bytes(pixels)
    assert len(data) == SIDE * SIDE
    np.testing.assert_array_equal(thumbnail_from_bytes(data), alignment_thumbnail(pixels))
    with pytest.raises(ValueError, match="1024 bytes"):
        thumbnail_from_bytes(data[:-1])


def test_copies_come_first_by_fused_score_and_the_rest_keep_the_latent_order() -> None:
    distances = np.array([0.10, 0.12, 0.15, 0.20, 0.30])
    scores = np.array([0.50, 0.95, 0.30, 0.99, 0.85])
    order = copies_first(distances, scores).tolist()
    # copies: 1 (0.05 + 0.24 = 0.29), 3 (0.01 + 0.40 = 0.41), 4 (0.15 + 0.60 = 0.75); then 0, 2
    assert order == [1, 3, 4, 0, 2]
    assert copies_first(distances, np.zeros(5)).tolist() == [0, 1, 2, 3, 4]


# --- through a real server -------------------------------------------------------------------------


@dataclass
class Library:
    store: Path
    running: RunningServer
    live: LiveStore
    queries: list[tuple[bytes, str]]  # (altered copy, the path of its original)

    def client(self) -> LatentdexClient:
        return connect(f"127.0.0.1:{self.running.port}")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Library]:
    root = tmp_path_factory.mktemp("copies")
    photos = root / "photos"
    photos.mkdir()
    queries = []
    for photo_number in range(2):
        photo = textured_photo(10 + photo_number)
        for crop_number, box in enumerate(crop_boxes(photo.width, TILE)):
            name = f"p{photo_number}-{crop_number:02d}.png"
            crop = photo.crop(box)
            crop.save(photos / name)
            if crop_number % 3 == 0:
                queries.append((altered_copy(crop, 0.85, crop_number), name))
    codec = LatentCodec.load()
    index_folder(photos, root / "store", codec, IndexOptions(workers=1))
    live = LiveStore(root / "store", check_interval=0.05)
    running = start_server(QueryEngine(codec, live), ServerConfig(port=0))
    yield Library(root / "store", running, live, queries)
    running.stop(0)
    live.close()


def test_an_altered_copy_finds_its_original_first(library: Library) -> None:
    with library.client() as client:
        firsts = [client.query_by_image(query, 5).matches[0].path for query, _ in library.queries]
    originals = [path for _, path in library.queries]
    assert firsts == originals


@dataclass
class Decoys:
    store: Path
    query: bytes


@pytest.fixture(scope="module")
def decoys(tmp_path_factory: pytest.TempPathFactory) -> Decoys:
    """A store whose latents are placed by hand: decoys nearer to the query's latent than its original,
    with other pictures' thumbnails."""
    codec = LatentCodec.load()
    original = textured_photo(20, 200)
    query = altered_copy(original, 0.85, 1)
    query_latent = QueryEngine(codec, None).encode(query)[0]
    rng = np.random.default_rng(0)

    def near(share: float) -> np.ndarray:
        """The query's latent plus random noise of `share` of its length."""
        noise = rng.normal(size=query_latent.shape)
        return query_latent + share * np.linalg.norm(query_latent) * noise / np.linalg.norm(noise)

    pictures = {"original.png": original} | {f"decoy-{n}.png": textured_photo(30 + n, 200) for n in range(4)}
    latents = {"original.png": near(0.3)} | {f"decoy-{n}.png": near(0.05) for n in range(4)}
    records = [
        ImageRecord(path=path, size=1, mtime_ns=1, content_hash=f"{n:064x}", model_id=codec.latent_space_id)
        for n, path in enumerate(pictures)
    ]
    thumbnails = [thumbnail_bytes(model_input(picture)) for picture in pictures.values()]
    folder = tmp_path_factory.mktemp("decoys") / "store"
    with LatentStore.create(folder, model_id=codec.latent_space_id, latent_dim=codec.latent_dim) as store:
        store.upsert_images(records, np.stack(list(latents.values())).astype(np.float32), None, thumbnails)
        store.flush()
    return Decoys(folder, query)


def test_the_original_outranks_decoys_the_latent_puts_nearer(decoys: Decoys) -> None:
    live = LiveStore(decoys.store, check_interval=0.05)
    running = start_server(QueryEngine(LatentCodec.load(), live), ServerConfig(port=0))
    try:
        with connect(f"127.0.0.1:{running.port}") as client:
            by_latent = client.query_by_image(decoys.query, 5, QueryOptions(ranking="latent")).matches
            ranked = client.query_by_image(decoys.query, 5).matches
    finally:
        running.stop(0)
        live.close()
    assert by_latent[0].path.startswith("decoy-")
    assert ranked[0].path == "original.png"
    assert [m.path for m in ranked[1:]] == [m.path for m in by_latent if m.path != "original.png"]


def test_the_query_command_ranks_copies_first_unless_told_by_latent(decoys: Decoys, tmp_path: Path) -> None:
    query = tmp_path / "query.jpg"
    query.write_bytes(decoys.query)
    runner = CliRunner()
    answers = {}
    for flags in ((), ("--by-latent",)):
        result = runner.invoke(app, ["query", str(query), "--store", str(decoys.store), "--json", *flags])
        assert result.exit_code == 0, result.output
        answers[flags] = [match["path"] for match in json.loads(result.stdout)]
    assert answers[()][0] == "original.png"
    assert answers[("--by-latent",)][0].startswith("decoy-")


def test_the_order_is_copies_by_fused_score_then_the_rest_by_distance(library: Library) -> None:
    query, _ = library.queries[0]
    with library.client() as client:
        matches = client.query_by_image(query, 12).matches
        nearest = client.query_by_image(query, 20, QueryOptions(ranking="latent")).matches
    with LatentStore.open(library.store, read_only=True) as store:
        thumbnails = store.alignment_thumbnails([m.id for m in matches])
    query_thumbnail = alignment_thumbnail(model_input(Image.open(io.BytesIO(query))))
    scores = alignment_scores(query_thumbnail, np.stack([thumbnails[m.id] for m in matches]))
    copy = scores >= COPY_NCC
    assert copy[0] and not (np.diff(copy.astype(int)) > 0).any()  # copies, then the rest
    rest = [m.distance for m, is_copy in zip(matches, copy, strict=True) if not is_copy]
    assert rest == sorted(rest)
    assert {m.id for m in matches} <= {m.id for m in nearest}  # drawn from the 20 nearest by latent


def test_only_the_nearest_twenty_are_re_ranked_whatever_k(library: Library) -> None:
    query, _ = library.queries[2]
    with library.client() as client:
        matches = client.query_by_image(query, 40).matches
        by_latent = client.query_by_image(query, 40, QueryOptions(ranking="latent")).matches
    assert len(matches) == 40
    assert {m.id for m in matches[:DEPTH]} == {m.id for m in by_latent[:DEPTH]}
    assert [m.id for m in matches[DEPTH:]] == [m.id for m in by_latent[DEPTH:]]


def test_a_query_by_id_puts_the_copies_of_the_image_first(library: Library) -> None:
    with LatentStore.open(library.store, read_only=True) as store:
        image_id = int(store.get_by_path(library.queries[1][1]).id or 0)
    with library.client() as client:
        matches = client.query_by_id(image_id, 5).matches
        including = client.query_by_id(image_id, 5, include_self=True).matches
    assert image_id not in {m.id for m in matches}
    assert including[0].id == image_id and [m.id for m in including[1:]] == [m.id for m in matches[:4]]


def test_an_unknown_ranking_is_invalid_argument(library: Library) -> None:
    query, _ = library.queries[0]
    with grpc.insecure_channel(f"127.0.0.1:{library.running.port}") as channel:
        stub = pb_grpc.LatentdexStub(channel)
        request = pb.QueryByImageRequest(image=query, options=pb.QueryOptions(k=3, ranking=7))
        with pytest.raises(grpc.RpcError) as caught:
            stub.QueryByImage(request, timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Ranking" in (caught.value.details() or "")
    with pytest.raises(ValueError, match="unknown ranking"):
        QueryOptions(ranking="pixels").message(3)


def test_images_indexed_without_thumbnails_keep_the_latent_order(library: Library, tmp_path: Path) -> None:
    copy = tmp_path / "store"
    shutil.copytree(library.store, copy)
    with sqlite3.connect(copy / "catalog.sqlite") as db:
        db.execute("UPDATE images SET alignment_thumbnail = NULL")
    runner = CliRunner()
    total = 2 * len(crop_boxes(480, TILE))
    before = runner.invoke(app, ["stats", str(library.store)]).output
    assert f"thumbnails:  {total} of {total} ok images have alignment thumbnails\n" in before
    after = runner.invoke(app, ["stats", str(copy)]).output
    assert f"thumbnails:  0 of {total} ok images have alignment thumbnails; a query whose nearest" in after
    live = LiveStore(copy, check_interval=0.05)
    running = start_server(QueryEngine(LatentCodec.load(), live), ServerConfig(port=0))
    try:
        with connect(f"127.0.0.1:{running.port}") as client:
            for query, _ in library.queries[:4]:
                matches = client.query_by_image(query, 8).matches
                assert [m.distance for m in matches] == sorted(m.distance for m in matches)
    finally:
        running.stop(0)
        live.close()
