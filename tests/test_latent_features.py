"""The latent space over gRPC: generate, interpolate, edit along learnt directions, traverse and map.

The image set has one known factor of variation: a square whose colour runs from blue (t = 0) to red
(t = 1), at a random place on a grey background. Directions learnt from the two ends of it must move a
held-out image's decoding along it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from latentdex.indexer.pipeline import IndexOptions, index_folder
from latentdex.indexer.store import LatentStore
from latentdex.models import latent_space
from latentdex.models.inference import LatentCodec
from latentdex.service.client import (
    FrameOptions,
    ImageGroup,
    LatentdexClient,
    QueryOptions,
    ServerError,
    connect,
)
from latentdex.service.live_store import LiveStore
from latentdex.service.queries import QueryEngine
from latentdex.service.server import RunningServer, start_server
from latentdex.service.server_config import ServerConfig


def factor_image(t: float, seed: int, size: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    ramp = np.linspace(90, 170, size, dtype=np.float32)
    pixels = np.repeat(np.repeat(ramp[None, :, None], size, axis=0), 3, axis=2)
    image = Image.fromarray(pixels.astype(np.uint8))
    left, top = (int(v) for v in rng.integers(4, size - 30, 2))
    colour = (round(40 + 200 * t), 60, round(40 + 200 * (1 - t)))
    ImageDraw.Draw(image).rectangle((left, top, left + 26, top + 26), fill=colour)
    return image


def redness(png: bytes) -> float:
    """Mean red minus mean blue over the picture: the factor, as the pixels show it."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)
    return float(pixels[..., 0].mean() - pixels[..., 2].mean())


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("factor") / "photos"
    for folder, (low, high) in {"blue": (0.0, 0.2), "red": (0.8, 1.0), "mid": (0.35, 0.65)}.items():
        (root / folder).mkdir(parents=True)
        for i in range(16):
            t = low + (high - low) * i / 15
            factor_image(t, 1000 * len(folder) + i).save(root / folder / f"{folder}{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def served(library: Path) -> Iterator[tuple[RunningServer, LatentCodec, Path]]:
    codec = LatentCodec.load()
    store = library.parent / "store"
    index_folder(library, store, codec, IndexOptions(workers=1))
    live = LiveStore(store, check_interval=0.05)
    running = start_server(QueryEngine(codec, live), ServerConfig(port=0))
    yield running, codec, store
    running.stop(0)
    live.close()


@pytest.fixture
def client(served: tuple[RunningServer, LatentCodec, Path]) -> Iterator[LatentdexClient]:
    with connect(f"127.0.0.1:{served[0].port}") as opened:
        yield opened


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_an_edit_along_a_learnt_direction_moves_a_held_out_image_along_the_factor(
    client: LatentdexClient,
) -> None:
    info = client.create_direction(
        "redder",
        ImageGroup(path_globs=["red/*"]),
        ImageGroup(path_globs=["blue/*"]),
        description="red square vs blue square",
    )
    assert (info.positive_count, info.negative_count) == (16, 16)
    assert info.method in ("mean_difference", "probe") and info.separation > 0.9 and info.norm > 0
    held_out = png(factor_image(0.5, seed=424242))  # never indexed, mid factor
    frames = client.edit(held_out, "redder", [-1.0, 0.0, 1.0], frames=FrameOptions(nearest_k=5))
    assert [f.position for f in frames] == [-1.0, 0.0, 1.0]
    scores = [redness(f.picture.data) for f in frames]
    assert scores[0] < scores[1] < scores[2] and scores[2] - scores[0] > 20, scores
    # "more like this, but redder": the photos nearest the +1 edit are redder than those nearest -1
    near_red = [m.path for m in frames[2].nearest]
    near_blue = [m.path for m in frames[0].nearest]
    assert sum(p.startswith("red/") for p in near_red) > sum(p.startswith("red/") for p in near_blue)
    assert sum(p.startswith("blue/") for p in near_blue) >= 3


def test_directions_are_listed_replaced_and_deleted(client: LatentdexClient) -> None:
    client.create_direction("bluer", ImageGroup(path_globs=["blue/*"]), ImageGroup(path_globs=["red/*"]))
    names = [d.name for d in client.list_directions()]
    assert "bluer" in names
    with pytest.raises(ServerError) as exists:
        client.create_direction("bluer", ImageGroup(ids=[1]), ImageGroup(ids=[2]))
    assert exists.value.code == "ALREADY_EXISTS"
    replaced = client.create_direction(
        "bluer",
        ImageGroup(path_globs=["blue/*"]),
        ImageGroup(path_globs=["mid/*"]),
        method="mean_difference",
        replace=True,
    )
    assert replaced.method == "mean_difference" and replaced.negative_count == 16
    [listed] = [d for d in client.list_directions(include_vectors=True) if d.name == "bluer"]
    assert listed.vector is not None and listed.vector.shape == (128,)
    assert np.isclose(np.linalg.norm(listed.vector), listed.norm, rtol=1e-4)
    client.delete_direction("bluer")
    assert "bluer" not in [d.name for d in client.list_directions()]
    with pytest.raises(ServerError) as gone:
        client.delete_direction("bluer")
    assert gone.value.code == "NOT_FOUND"


def test_a_direction_from_query_results_and_ids_is_their_mean_difference(client: LatentdexClient) -> None:
    red_query = png(factor_image(0.95, seed=7))
    with_latents = QueryOptions(include_latents=True)
    positive = client.query_by_image(red_query, 6, with_latents).matches
    negative = client.query_by_image(png(factor_image(0.05, seed=8)), 5, with_latents).matches
    negative = [m for m in negative if m.id not in {p.id for p in positive}]
    info = client.create_direction(
        "from-query",
        ImageGroup(query=red_query, query_k=6),
        ImageGroup(ids=[m.id for m in negative]),
        method="mean_difference",
    )
    assert info.method == "mean_difference"
    assert (info.positive_count, info.negative_count) == (6, len(negative))
    [stored] = [d for d in client.list_directions(include_vectors=True) if d.name == "from-query"]
    expected = np.mean([m.latent for m in positive], axis=0) - np.mean([m.latent for m in negative], axis=0)
    np.testing.assert_allclose(stored.vector, expected, rtol=1e-4, atol=1e-5)


def test_interpolation_ends_are_the_inputs_reconstructions_and_slerp_keeps_norms(
    client: LatentdexClient, served: tuple[RunningServer, LatentCodec, Path], library: Path
) -> None:
    start, end = library / "blue" / "blue03.png", library / "red" / "red12.png"
    _, codec, _ = served
    for method in ("linear", "slerp"):
        options = FrameOptions(nearest_k=1, thumbnails=True)
        frames = client.interpolate(start, end, 9, method=method, frames=options)
        assert all(f.nearest[0].thumbnail is not None for f in frames)  # the originals, from the library
        assert len(frames) == 9 and frames[0].position == 0.0 and frames[-1].position == 1.0
        assert [m.path for m in frames[0].nearest] == ["blue/blue03.png"]
        assert [m.path for m in frames[-1].nearest] == ["red/red12.png"]
        for frame, path in ((frames[0], start), (frames[-1], end)):
            reconstruction = codec.decode(codec.encode(np.asarray(Image.open(path).convert("RGB"))[None]))[0]
            decoded = np.asarray(Image.open(io.BytesIO(frame.picture.data)))
            assert np.abs(decoded.astype(int) - reconstruction.astype(int)).max() <= 1
        scores = [redness(f.picture.data) for f in frames]
        assert scores[-1] - scores[0] > 40 and np.corrcoef(scores, np.arange(9))[0, 1] > 0.9
        if method == "slerp":
            norms = np.linalg.norm([f.latent for f in frames], axis=1)
            low, high = sorted((norms[0], norms[-1]))
            assert (norms >= low - 1e-3).all() and (norms <= high + 1e-3).all()


def test_generate_is_seeded_and_lands_near_its_anchor(client: LatentdexClient, library: Path) -> None:
    first = client.generate(6, seed=11, frames=FrameOptions(nearest_k=3, size=96))
    again = client.generate(6, seed=11)
    other = client.generate(6, seed=12)
    assert len(first) == 6 and all(len(f.nearest) == 3 for f in first)
    assert all((f.picture.width, f.picture.height) == (96, 96) for f in first)
    assert np.array_equal(np.stack([f.latent for f in first]), np.stack([f.latent for f in again]))
    assert not np.allclose(np.stack([f.latent for f in first]), np.stack([f.latent for f in other]))
    prior = client.generate(4, seed=1, source="prior")
    anchor = client.encode(library / "red" / "red05.png")
    around = client.generate(4, seed=1, around=library / "red" / "red05.png", spread=0.5)
    near = np.linalg.norm(np.stack([f.latent for f in around]) - anchor, axis=1)
    far = np.linalg.norm(np.stack([f.latent for f in prior]) - anchor, axis=1)
    assert near.max() < far.min()
    stored = client.generate(
        3, seed=2, around=client.query_by_image(library / "red" / "red05.png", 1).matches[0].id
    )
    assert len(stored) == 3


def test_traverse_moves_one_dimension_per_row(
    client: LatentdexClient, library: Path, served: tuple[RunningServer, LatentCodec, Path]
) -> None:
    rows = client.traverse(library / "mid" / "mid08.png", top=3, values=[-2.0, 0.0, 2.0], size=32)
    dims, active, count = client.latent_stats()
    assert count == 48 and 1 <= active <= 128
    with LatentStore.open(served[2], read_only=True) as store:
        # one definition of an active dimension, the model's: the server's count is the same
        assert active == len(latent_space.active_dimensions(store.all_latents()[1]).active())
    variances = [v for _, _, v in dims]
    assert variances == sorted(variances, reverse=True)
    assert [d for d, _ in rows] == [d for d, _, _ in dims[:3]]
    source = client.encode(library / "mid" / "mid08.png")
    for dimension, frames in rows:
        assert [f.position for f in frames] == [-2.0, 0.0, 2.0]
        changed = np.flatnonzero(~np.isclose(frames[0].latent, source))
        assert changed.tolist() == [dimension]
        np.testing.assert_allclose(frames[1].latent, source, atol=1e-6)
        assert frames[0].picture.width == 32


def test_the_library_map_places_each_image_once(client: LatentdexClient) -> None:
    library_map = client.render_map(6, 4, 32)
    with Image.open(io.BytesIO(library_map.atlas.data)) as atlas:
        assert atlas.size == (6 * 32, 4 * 32)
    places = [(column, row) for _, column, row, _ in library_map.cells]
    assert len(places) == len(set(places)) > 6
    assert len({image_id for image_id, *_ in library_map.cells}) == len(library_map.cells)
    assert 0 < library_map.explained[1] <= library_map.explained[0] < 1
    decoded = client.render_map(4, 4, 16, decoded=True)
    assert decoded.atlas.width == 64


BAD = {
    "unknown direction": ("NOT_FOUND", lambda c, lib: c.edit(np.zeros(128, np.float32), "no-such", [1.0])),
    "one step": ("INVALID_ARGUMENT", lambda c, lib: c.interpolate(1, 2, 1)),
    "too many steps": ("INVALID_ARGUMENT", lambda c, lib: c.interpolate(1, 2, 300)),
    "short latent": ("INVALID_ARGUMENT", lambda c, lib: c.interpolate(np.zeros(5, np.float32), 2, 4)),
    "no samples": ("INVALID_ARGUMENT", lambda c, lib: c.generate(0)),
    "too many samples": ("INVALID_ARGUMENT", lambda c, lib: c.generate(500)),
    "strength out of range": ("INVALID_ARGUMENT", lambda c, lib: c.edit(1, "redder", [1e6])),
    "bad name": (
        "INVALID_ARGUMENT",
        lambda c, lib: c.create_direction("no spaces", ImageGroup(ids=[1]), ImageGroup(ids=[2])),
    ),
    "empty group": (
        "INVALID_ARGUMENT",
        lambda c, lib: c.create_direction("x", ImageGroup(), ImageGroup(ids=[2])),
    ),
    "unknown id in group": (
        "NOT_FOUND",
        lambda c, lib: c.create_direction("x", ImageGroup(ids=[999999]), ImageGroup(ids=[2])),
    ),
    "glob matching nothing": (
        "NOT_FOUND",
        lambda c, lib: c.create_direction("x", ImageGroup(path_globs=["nope/*"]), ImageGroup(ids=[2])),
    ),
    "dimension out of range": ("INVALID_ARGUMENT", lambda c, lib: c.traverse(1, dimensions=[128])),
    "map too small": ("INVALID_ARGUMENT", lambda c, lib: c.render_map(1, 4, 32)),
    "unknown id": ("NOT_FOUND", lambda c, lib: c.interpolate(987654, 2, 4)),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_arguments_get_a_clear_status(client: LatentdexClient, library: Path, case: str) -> None:
    code, call = BAD[case]
    with pytest.raises(ServerError) as refused:
        call(client, library)
    assert refused.value.code == code, refused.value
    assert refused.value.details
    assert client.info().image_count == 48
