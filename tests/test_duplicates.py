"""Near-duplicate groups on a generated library with known copies (shipped model, a whitened store): exact
copies, a re-encode, a resize, two crops (found through the perceptual hashes), a burst of distinct
frames that `near` keeps apart, and white drawings on transparency (which would render blank on white) that
nothing links; the fall-back to the latent threshold for images without a hash; the
keeper rule; the RPC's pages and its bad arguments; the CLI's text, JSON, sheet, script and exit codes."""

from __future__ import annotations

import json
import math
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from latentdex.indexer.catalog import ImageRecord
from latentdex.indexer.duplicates import (
    EXACT_RANGE_MAX,
    HASH_RULES,
    PRESETS,
    REGION_RULES,
    HashRule,
    UnionFind,
    duplicates_of,
    find_duplicates,
    keeper_order,
    linked_pairs,
    resolve_hash_rule,
    resolve_threshold,
)
from latentdex.indexer.pipeline import IndexOptions, index_folder
from latentdex.indexer.search_filter import SearchFilter
from latentdex.indexer.store import LatentStore
from latentdex.models.inference import LatentCodec
from latentdex.service.cli import app, main
from latentdex.service.client import ServerError, connect
from latentdex.service.duplicate_files import indexed_file_features, region_check
from latentdex.service.live_store import LiveStore
from latentdex.service.queries import QueryEngine
from latentdex.service.sample_collection import write_sample_collection
from latentdex.service.server import RunningServer, start_server
from latentdex.service.server_config import ServerConfig
from latentdex.v1 import latentdex_pb2 as pb
from latentdex.v1 import latentdex_pb2_grpc as pb_grpc

pytestmark = pytest.mark.slow
SCENES = 270  # over 2 x 128 images: the store fits its whitening, as the presets assume
COPIES = 13
NEAR_GROUPS = 5
REGION_GROUPS = [
    ["scenes/scene-008.webp", "copies/cropped-80.png"],
    ["scenes/scene-009.jpg", "copies/cropped-turned.png"],
]
NEAR_GROUPS_WITH_FILES = NEAR_GROUPS + len(REGION_GROUPS)  # the CLI and the server read the files
CROP_GROUPS = [
    ["scenes/scene-003.jpg", "copies/cropped.png"],
    ["scenes/scene-006.jpg", "copies/cropped-more.jpg"],
]
WHITE_DRAWINGS = ["copies/white-disc.png", "copies/white-bar.png", "copies/white-page.png"]
EXACT_GROUP = ["copies/scene-000.jpg", "copies/again-scene-000.jpg", "scenes/scene-000.jpg"]
runner = CliRunner()
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@dataclass
class Library:
    root: Path
    store: Path
    ids: dict[str, int]  # relative path -> id

    def id(self, path: str) -> int:
        return self.ids[path]


def build_library(folder: Path) -> Library:
    root = folder / "photos"
    scenes = write_sample_collection(root / "scenes", count=SCENES, size=(320, 240))
    copies = root / "copies"
    copies.mkdir()
    shutil.copy(scenes[0], copies / scenes[0].name)  # exact copies in two other places
    shutil.copy(scenes[0], copies / f"again-{scenes[0].name}")
    Image.open(scenes[1]).convert("RGB").save(copies / "reencoded.jpg", quality=60)
    original = Image.open(scenes[2]).convert("RGB")
    original.resize((160, 120), Image.Resampling.LANCZOS).save(copies / "small.png")
    Image.open(scenes[3]).convert("RGB").crop((8, 6, 312, 234)).save(copies / "cropped.png")
    cropped = Image.open(scenes[6]).convert("RGB").crop((16, 12, 304, 228))  # 90% of each side
    cropped.save(copies / "cropped-more.jpg", quality=85)
    # found by the region check alone: an 80% crop, and a crop turned by 2 degrees
    Image.open(scenes[8]).convert("RGB").crop((30, 22, 290, 218)).save(copies / "cropped-80.png")
    turned = Image.open(scenes[9]).convert("RGB").crop((30, 22, 290, 218)).rotate(2)
    turned.save(copies / "cropped-turned.png")
    # a scene whose wider shot is not in the library (else each frame would be a crop of it)
    [wide] = write_sample_collection(folder / "not-indexed", count=1, seed=1, size=(320, 240))
    burst = Image.open(wide).convert("RGB")
    burst.crop((0, 0, 272, 204)).save(copies / "burst-1.png")  # two frames of one scene, panned 15%
    burst.crop((48, 36, 320, 240)).save(copies / "burst-2.png")
    # a white disc and a white bar on transparency (on white, both would be a white page), and a white page
    disc = Image.new("RGBA", (240, 240), (0, 0, 0, 0))
    ImageDraw.Draw(disc).ellipse((40, 40, 200, 200), fill=(255, 255, 255, 255))
    disc.save(copies / "white-disc.png")
    bar = Image.new("RGBA", (320, 200), (0, 0, 0, 0))
    ImageDraw.Draw(bar).rectangle((20, 90, 300, 110), fill=(255, 255, 255, 255))
    bar.save(copies / "white-bar.png")
    Image.new("RGB", (300, 400), (255, 255, 255)).save(copies / "white-page.png")
    store = folder / "store"
    index_folder(root, store, LatentCodec.load(), IndexOptions(workers=1))
    with LatentStore.open(store, read_only=True) as opened:
        ids = {entry.path: entry.id for entry in opened.entries()}
    return Library(root, store, ids)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    return build_library(tmp_path_factory.mktemp("duplicates"))


def groups_by_path(
    library: Library,
    threshold: float | None,
    where: SearchFilter | None = None,
    hash_rule: HashRule | None = None,
    store_folder: Path | None = None,
) -> list:
    with LatentStore.open(store_folder or library.store, read_only=True) as store:
        report = find_duplicates(store, threshold, where, hash_rule=hash_rule)
    return [[m.path for m in group.members] for group in report.groups]


def near(library: Library) -> float | None:
    with LatentStore.open(library.store, read_only=True) as store:
        assert store.distance_space == "whitened"
        return resolve_threshold("near", None, store.distance_space)


def test_near_groups_the_copies_and_the_crops_and_keeps_burst_frames_apart(library: Library) -> None:
    groups = groups_by_path(library, near(library), hash_rule=HASH_RULES["near"]["whitened"])
    # same pixels, no capture time, paths of one length: the lowest id keeps (the rule's last step)
    assert groups[0] == EXACT_GROUP
    assert ["copies/reencoded.jpg", "scenes/scene-001.png"] in groups
    assert ["scenes/scene-002.webp", "copies/small.png"] in groups  # the larger original is the keeper
    assert all(crop in groups for crop in CROP_GROUPS)  # linked by pHash; their latents moved further
    assert not any(any("burst" in p for p in g) for g in groups)
    assert len(groups) == NEAR_GROUPS
    assert not any(white in group for group in groups for white in WHITE_DRAWINGS)


def test_white_drawings_on_transparency_are_seen_and_kept_apart(library: Library) -> None:
    with LatentStore.open(library.store, read_only=True) as store:
        ids = [library.id(path) for path in WHITE_DRAWINGS]
        distances = store.duplicate_distances(ids)
        hashes, known = store.perceptual_hashes(np.array(ids))
        for path in WHITE_DRAWINGS:
            for preset in ("near", "similar"):
                group = duplicates_of(
                    store,
                    library.id(path),
                    resolve_threshold(preset, None, "whitened"),
                    hash_rule=HASH_RULES[preset]["whitened"],
                )
                assert group is None, (preset, path, [m.path for m in group.members])
    # on black, the disc and the bar are two pictures, and neither is the white page
    assert distances[np.triu_indices(3, 1)].min() > PRESETS["similar"]["whitened"]
    assert known.all() and len(set(hashes[:, 0].tolist())) == 3
    similar = groups_by_path(
        library, PRESETS["similar"]["whitened"], hash_rule=HASH_RULES["similar"]["whitened"]
    )
    assert not any(white in group for group in similar for white in WHITE_DRAWINGS)


def test_the_region_check_links_crops_the_latents_and_hashes_miss_but_not_burst_frames(
    library: Library,
) -> None:
    with LatentStore.open(library.store, read_only=True) as store:
        space = store.distance_space
        check = region_check("near", None, space, store.indexed_root())
        assert check is not None and check.rule == REGION_RULES["near"]["whitened"]
        report = find_duplicates(
            store, near(library), hash_rule=HASH_RULES["near"]["whitened"], regions=check
        )
    groups = [[m.path for m in group.members] for group in report.groups]
    assert all(group in groups for group in REGION_GROUPS)
    assert len(groups) == NEAR_GROUPS_WITH_FILES and report.regions is check
    assert not any(any("burst" in p for p in g) for g in groups)  # they align, but stick out of each other
    assert check.pairs_linked == len(REGION_GROUPS) and check.pairs_checked > check.pairs_linked
    assert check.files_unreadable == 0
    without = groups_by_path(library, near(library), hash_rule=HASH_RULES["near"]["whitened"])
    assert not any(group in without for group in REGION_GROUPS)  # the region check alone links them
    with LatentStore.open(library.store, read_only=True) as store:
        threaded = region_check("near", None, space, store.indexed_root(), threads=3)
        assert threaded is not None
        again = find_duplicates(
            store, near(library), hash_rule=HASH_RULES["near"]["whitened"], regions=threaded
        )
    assert [[m.path for m in group.members] for group in again.groups] == groups  # files read on 3 threads
    assert threaded.pairs_checked == check.pairs_checked and threaded.pairs_linked == check.pairs_linked


def test_the_region_check_skips_files_that_are_gone_or_changed(library: Library, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(library.root, photos)
    (photos / "copies/cropped-80.png").unlink()
    changed = photos / "scenes/scene-009.jpg"
    Image.open(changed).convert("RGB").save(changed, quality=40)  # edited since it was indexed
    features = indexed_file_features(photos)
    with LatentStore.open(library.store, read_only=True) as store:
        records = {r.path: r for r in store.get(sorted(library.ids.values()))}
        check = region_check("near", None, store.distance_space, photos)
        assert check is not None
        report = find_duplicates(
            store, near(library), hash_rule=HASH_RULES["near"]["whitened"], regions=check
        )
    assert features(records["copies/cropped-80.png"]) is None
    assert features(records["scenes/scene-009.jpg"]) is None
    assert features(records["copies/cropped-turned.png"]) is not None
    assert indexed_file_features(None)(records["copies/cropped-turned.png"]) is None
    groups = [[m.path for m in group.members] for group in report.groups]
    assert not any(group in groups for group in REGION_GROUPS) and len(groups) == NEAR_GROUPS
    assert check.files_unreadable >= 2
    assert region_check("near", 0.1, "whitened", photos) is None  # an explicit threshold is the whole rule
    assert region_check("near", None, "whitened", photos, check_files=False) is None
    assert region_check("exact", None, "whitened", photos) is None


def test_without_perceptual_hashes_near_falls_back_to_the_latent_threshold(
    library: Library, tmp_path: Path
) -> None:
    latent_only = groups_by_path(library, near(library))
    assert CROP_GROUPS[1] not in latent_only  # the 90% crop's latent moved past the threshold
    # a store indexed before hashes were kept: the same groups, whatever the rule
    shutil.copytree(library.store, tmp_path / "store")
    with sqlite3.connect(tmp_path / "store" / "catalog.sqlite") as db:
        db.execute("UPDATE images SET perceptual_hash = NULL, region_hashes = NULL")
    rule = HASH_RULES["near"]["whitened"]
    assert (
        groups_by_path(library, near(library), hash_rule=rule, store_folder=tmp_path / "store") == latent_only
    )
    stats = runner.invoke(app, ["stats", str(tmp_path / "store")])
    total = SCENES + COPIES
    assert f"hashes:      0 of {total} ok images have perceptual hashes; the rest match" in stats.output
    with LatentStore.open(library.store, read_only=True) as store:
        hashes, known = store.perceptual_hashes(store.select_ids())
    assert known.all() and len({tuple(row) for row in hashes.tolist()}) > SCENES // 2


def test_an_index_run_gives_images_indexed_without_hashes_their_hashes(
    library: Library, tmp_path: Path
) -> None:
    shutil.copytree(library.store, tmp_path / "store")
    with sqlite3.connect(tmp_path / "store" / "catalog.sqlite") as db:
        db.execute(
            "UPDATE images SET perceptual_hash = NULL, region_hashes = NULL, alignment_thumbnail = NULL"
        )
    with LatentStore.open(library.store, read_only=True) as store:
        ids = store.select_ids()
        expected_hashes, _ = store.perceptual_hashes(ids)
        expected_thumbnails = store.alignment_thumbnails(ids)
        expected_latents = store.latents(ids)
    assert sorted(expected_thumbnails) == sorted(ids.tolist())

    report = index_folder(library.root, tmp_path / "store", LatentCodec.load(), IndexOptions(workers=1))

    total = SCENES + COPIES
    assert (report.counts.unchanged, report.counts.new, report.counts.changed) == (total, 0, 0)
    assert report.hashed == total
    added = f"perceptual hashes and thumbnails added to {total} of {total} images indexed without them"
    assert added in report.notes
    with LatentStore.open(tmp_path / "store", read_only=True) as store:
        hashes, known = store.perceptual_hashes(ids)
        assert known.all()
        np.testing.assert_array_equal(hashes, expected_hashes)
        thumbnails = store.alignment_thumbnails(ids)
        assert sorted(thumbnails) == sorted(expected_thumbnails)
        for image_id, thumbnail in expected_thumbnails.items():
            np.testing.assert_array_equal(thumbnails[image_id], thumbnail)
        np.testing.assert_array_equal(store.latents(ids), expected_latents)  # nothing re-encoded
    rule = HASH_RULES["near"]["whitened"]
    assert groups_by_path(library, near(library), hash_rule=rule, store_folder=tmp_path / "store") == (
        groups_by_path(library, near(library), hash_rule=rule)
    )
    again = index_folder(library.root, tmp_path / "store", LatentCodec.load(), IndexOptions(workers=1))
    assert again.hashed == 0 and not any("perceptual hashes" in note for note in again.notes)


def test_hashes_are_not_added_for_a_file_whose_content_changed_behind_an_unchanged_stat(
    tmp_path: Path,
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(7)
    for name in ("first", "second"):  # BMP: same pixel size, same file size
        Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(photos / f"{name}.bmp")
    store_folder = tmp_path / "store"
    index_folder(photos, store_folder, LatentCodec.load(), IndexOptions(workers=1))
    with sqlite3.connect(store_folder / "catalog.sqlite") as db:
        db.execute("UPDATE images SET perceptual_hash = NULL, region_hashes = NULL")
    changed = photos / "second.bmp"
    stat = changed.stat()
    Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(changed)
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert changed.stat().st_size == stat.st_size

    report = index_folder(photos, store_folder, LatentCodec.load(), IndexOptions(workers=1))

    assert report.counts.unchanged == 2 and report.hashed == 1
    assert "perceptual hashes and thumbnails added to 1 of 2 images indexed without them" in report.notes
    with LatentStore.open(store_folder, read_only=True) as store:
        by_path = {entry.path: entry.id for entry in store.entries()}
        _, known = store.perceptual_hashes(np.array([by_path["first.bmp"], by_path["second.bmp"]]))
    assert known.tolist() == [True, False]


def test_the_hash_rule_comes_with_a_preset_only() -> None:
    assert resolve_hash_rule(None, None, "whitened") == HASH_RULES["near"]["whitened"]
    assert resolve_hash_rule("similar", None, "cosine") == HASH_RULES["similar"]["cosine"]
    assert resolve_hash_rule(None, 0.05, "whitened") is None  # an explicit threshold is the whole rule
    assert resolve_hash_rule("exact", None, "whitened") is None
    rule = HASH_RULES["near"]["whitened"]
    links = rule.links(
        np.array([rule.latent_threshold, rule.max_distance, rule.max_distance, rule.max_distance + 0.01]),
        np.array([40, rule.max_bits, rule.max_bits + 1, 0]),
    )
    assert links.tolist() == [True, True, False, False]


def test_exact_groups_only_identical_files_whatever_the_threshold(library: Library) -> None:
    with LatentStore.open(library.store, read_only=True) as store:
        exact = find_duplicates(store, None)
    assert [[m.path for m in g.members] for g in exact.groups] == [EXACT_GROUP]
    assert exact.groups[0].exact and set(exact.groups[0].distances.values()) == {0.0}
    assert len(exact.groups[0].pairs) == 3
    tiny = groups_by_path(library, 0.0)
    assert EXACT_GROUP in tiny


def test_a_looser_threshold_also_joins_the_crop_but_not_the_burst(library: Library) -> None:
    groups = groups_by_path(library, 0.1)
    assert ["scenes/scene-003.jpg", "copies/cropped.png"] in groups
    assert not any(any("burst" in p for p in g) for g in groups)


def test_a_filter_limits_which_images_take_part(library: Library) -> None:
    rule = HASH_RULES["near"]["whitened"]
    groups = groups_by_path(library, near(library), SearchFilter(path_prefix="copies/"), hash_rule=rule)
    assert groups == [["copies/scene-000.jpg", "copies/again-scene-000.jpg"]]  # the scenes/ copy is out


def test_the_keeper_is_the_largest_then_the_oldest_then_the_shortest_path() -> None:
    def record(path: str, width: int, taken: datetime | None, image_id: int) -> ImageRecord:
        return ImageRecord(
            path=path,
            size=1,
            mtime_ns=0,
            content_hash="x",
            width=width,
            height=100,
            capture_time=taken,
            id=image_id,
        )

    old, new = datetime(2020, 1, 1), datetime(2024, 1, 1)
    candidates = [
        record("a/longer-name.jpg", 100, old, 1),
        record("b.jpg", 100, None, 2),
        record("c.jpg", 100, new, 3),
        record("big.jpg", 200, None, 4),
        record("a/x.jpg", 100, old, 5),
    ]
    ordered = [r.id for r in sorted(candidates, key=keeper_order)]
    assert ordered == [4, 5, 1, 3, 2]


def test_presets_and_thresholds_are_checked() -> None:
    assert resolve_threshold(None, None, "whitened") == PRESETS["near"]["whitened"]
    assert resolve_threshold("exact", None, "l2") is None
    assert resolve_threshold(None, 3.5, "l2") == 3.5
    for preset, threshold, space in (
        ("bogus", None, "whitened"),
        ("near", 0.1, "whitened"),
        (None, 2.5, "whitened"),
        (None, -0.1, "cosine"),
        (None, math.nan, "whitened"),
        ("near", None, "l2"),
    ):
        with pytest.raises(Exception, match=r"preset|threshold") as raised:
            resolve_threshold(preset, threshold, space)
        assert type(raised.value).__name__ == "InvalidQuery"


# --- over gRPC ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(library: Library) -> Iterator[RunningServer]:
    live = LiveStore(library.store)
    running = start_server(QueryEngine(LatentCodec.load(), live), ServerConfig(port=0))
    yield running
    running.stop(0)
    live.close()


def test_the_rpc_pages_through_every_group(served: RunningServer, library: Library) -> None:
    with connect(f"127.0.0.1:{served.port}") as client:
        first = client.find_duplicates(page_size=4)
        second = client.find_duplicates(page_size=4, page_token=first.next_page_token)
        assert first.total_groups == NEAR_GROUPS_WITH_FILES and first.images_scanned == SCENES + COPIES
        assert len(first.groups) == 4 and len(second.groups) == 3 and second.next_page_token == ""
        paths = [[m.path for m in g.members] for g in first.groups + second.groups]
        assert all(group in paths for group in REGION_GROUPS)
        region = REGION_RULES["near"]["whitened"]
        assert first.region_rule is not None and first.region_rule.min_inliers == region.min_inliers
        assert first.region_rule.min_contained == pytest.approx(region.min_contained)
        assert first.region_rule.max_distance == pytest.approx(region.max_distance)
        assert first.region_rule.min_agreement == pytest.approx(region.min_agreement)
        latent_and_hashes = client.find_duplicates(check_files=False)
        assert latent_and_hashes.total_groups == NEAR_GROUPS and latent_and_hashes.region_rule is None
    with sqlite3.connect(library.store / "catalog.sqlite") as catalog:  # the server kept what pairs gave
        assert catalog.execute("SELECT count(*) FROM region_overlaps").fetchone()[0] >= len(REGION_GROUPS)
    with connect(f"127.0.0.1:{served.port}") as client:
        assert first.threshold == pytest.approx(PRESETS["near"]["whitened"])
        rule = HASH_RULES["near"]["whitened"]
        assert first.hash_rule is not None and first.hash_rule.max_bits == rule.max_bits
        assert first.hash_rule.threshold == pytest.approx(rule.latent_threshold)
        assert first.hash_rule.max_distance == pytest.approx(rule.max_distance)
        keeper = first.groups[0].keeper
        assert keeper.path == "copies/scene-000.jpg" and first.groups[0].exact
        assert [m.distance for m in first.groups[0].members] == [0.0, 0.0, 0.0]
        group = client.duplicates_of(library.id("copies/reencoded.jpg"))
        assert group is not None and [m.path for m in group.members] == [
            "copies/reencoded.jpg",
            "scenes/scene-001.png",
        ]
        assert client.duplicates_of(library.id("copies/burst-1.png")) is None
        cropped = client.duplicates_of(library.id("copies/cropped-80.png"))
        assert cropped is not None and [m.path for m in cropped.members] == REGION_GROUPS[0]
        assert client.duplicates_of(library.id("copies/cropped-80.png"), check_files=False) is None
        exact = client.find_duplicates(preset="exact")
        assert exact.total_groups == 1 and exact.threshold is None and exact.hash_rule is None
        loose = client.find_duplicates(threshold=0.1)
        assert loose.hash_rule is None  # a threshold is the whole rule: at 0.1 it reaches both crops too
        assert loose.total_groups == NEAR_GROUPS


@pytest.mark.parametrize(
    ("request_message", "code"),
    [
        (pb.FindDuplicatesRequest(preset=57), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.FindDuplicatesRequest(threshold=2.5), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.FindDuplicatesRequest(threshold=float("nan")), grpc.StatusCode.INVALID_ARGUMENT),
        (
            pb.FindDuplicatesRequest(preset=pb.DUPLICATE_PRESET_NEAR, threshold=0.1),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
        (pb.FindDuplicatesRequest(page_size=5000), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.FindDuplicatesRequest(page_token="bm90LWEtdG9rZW4="), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.FindDuplicatesRequest(of_id=999_999), grpc.StatusCode.NOT_FOUND),
    ],
)
def test_bad_arguments_are_refused_at_the_wire(
    served: RunningServer, request_message: pb.FindDuplicatesRequest, code: grpc.StatusCode
) -> None:
    with (
        grpc.insecure_channel(f"127.0.0.1:{served.port}") as channel,
        pytest.raises(grpc.RpcError) as refused,
    ):
        pb_grpc.LatentdexStub(channel).FindDuplicates(request_message, timeout=60)
    assert refused.value.code() == code


def test_a_page_token_from_before_the_store_changed_is_refused(tmp_path: Path, library: Library) -> None:
    shutil.copytree(library.store, tmp_path / "store")
    live = LiveStore(tmp_path / "store", check_interval=0.05)
    running = start_server(QueryEngine(LatentCodec.load(), live), ServerConfig(port=0))
    try:
        with connect(f"127.0.0.1:{running.port}") as client:
            first = client.find_duplicates(page_size=1)
            with LatentStore.open(tmp_path / "store") as writer:
                writer.remove_images([library.id("copies/small.png")])
                writer.flush()
            with pytest.raises(ServerError) as refused:
                for _ in range(100):  # until the server has picked up the changed store
                    client.find_duplicates(page_size=1, page_token=first.next_page_token)
            assert refused.value.code == "INVALID_ARGUMENT" and "start again" in str(refused.value)
    finally:
        running.stop(0)
        live.close()


# --- the command line ---------------------------------------------------------------------------------


def test_the_cli_prints_json_draws_a_sheet_and_writes_a_script_that_moves_only_copies(
    library: Library, tmp_path: Path
) -> None:
    sheet, script = tmp_path / "groups.png", tmp_path / "review.sh"
    store = tmp_path / "store"  # a copy: what the region check keeps in the catalog is this test's own
    shutil.copytree(library.store, store)
    result = runner.invoke(
        app, ["duplicates", str(store), "--json", "--sheet", str(sheet), "--emit-script", str(script)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["groups_found"] == NEAR_GROUPS_WITH_FILES and report["preset"] == "near"
    assert report["hash_rule"] == asdict(HASH_RULES["near"]["whitened"])
    regions = report["region_check"]
    assert regions["rule"] == asdict(REGION_RULES["near"]["whitened"])
    assert regions["pairs_linked"] >= len(REGION_GROUPS) and regions["files_unreadable"] == 0
    assert regions["files_read"] <= 2 * regions["pairs_checked"]  # each file read once for the run
    again = runner.invoke(app, ["duplicates", str(store), "--json"])
    assert again.exit_code == 0, again.output
    remembered = json.loads(again.stdout)
    assert remembered["groups"] == report["groups"]  # the same groups, from what the first run kept
    assert remembered["region_check"]["pairs_checked"] == 0 and remembered["region_check"]["files_read"] == 0
    assert (
        remembered["region_check"]["pairs_remembered"]
        == regions["pairs_checked"] + regions["pairs_remembered"]
    )
    text = runner.invoke(app, ["duplicates", str(store)])
    assert text.exit_code == 0 and "known from before" in text.output
    assert report["groups"][0]["keeper"] == library.id("copies/scene-000.jpg")
    assert Image.open(sheet).size[1] > 3 * 128
    photos = tmp_path / "photos"
    shutil.copytree(library.root, photos)
    text = script.read_text().replace(f"cd {library.root}", f"cd {photos}")
    script.write_text(text)
    subprocess.run(["sh", str(script), str(tmp_path / "review")], check=True)
    moved = sorted(str(p.relative_to(tmp_path / "review")) for p in (tmp_path / "review").rglob("*.*"))
    assert moved == [
        "copies/again-scene-000.jpg",
        "copies/cropped-80.png",
        "copies/cropped-more.jpg",
        "copies/cropped-turned.png",
        "copies/cropped.png",
        "copies/small.png",
        "scenes/scene-000.jpg",
        "scenes/scene-001.png",
    ]
    assert (photos / "copies/scene-000.jpg").exists() and (photos / "copies/reencoded.jpg").exists()


def test_the_cli_reads_no_file_when_told_not_to(library: Library) -> None:
    result = runner.invoke(app, ["duplicates", str(library.store), "--json", "--no-check-files"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["groups_found"] == NEAR_GROUPS and report["region_check"] is None
    text = runner.invoke(app, ["duplicates", str(library.store)])
    assert (
        text.exit_code == 0
        and "region check:" in text.output
        and f"{NEAR_GROUPS_WITH_FILES} groups" in text.output
    )


@pytest.mark.parametrize(
    "options", [["--preset", "bogus"], ["--threshold", "3"], ["--preset", "near", "--threshold", "0.1"]]
)
def test_the_cli_refuses_bad_options_with_exit_2(
    library: Library, options: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.argv", ["latentdex", "duplicates", str(library.store), *options])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert capsys.readouterr().err.lower().startswith(("error: ", "usage: "))


def test_query_duplicates_of_lists_one_images_group(library: Library) -> None:
    result = runner.invoke(
        app, ["query", "--duplicates-of", str(library.id("copies/small.png")), "--store", str(library.store)]
    )
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[0] == "keep" and lines[0].endswith("scenes/scene-002.webp")
    assert lines[1].endswith("copies/small.png") and len(lines) == 2


@pytest.mark.parametrize("metric", ["cosine", "l2"])
def test_the_range_search_past_the_exact_size_finds_every_planted_pair(metric: str) -> None:
    """Above EXACT_RANGE_MAX images the links come from an IVF index built for the run: every planted
    near-copy pair is found, each once, and nothing else."""
    rng = np.random.default_rng(0)
    count, planted = EXACT_RANGE_MAX + 5_000, 300
    vectors = rng.standard_normal((count, 32)).astype(np.float32)
    originals = rng.choice(count - planted, planted, replace=False)
    copies = np.arange(count - planted, count)
    vectors[copies] = vectors[originals] + 0.01 * rng.standard_normal((planted, 32)).astype(np.float32)
    if metric == "cosine":
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    threshold = 0.01 if metric == "cosine" else 0.2
    pairs = set()
    for first, second in linked_pairs(vectors, metric, threshold):
        pairs.update(zip(first.tolist(), second.tolist(), strict=True))
    expected = {tuple(sorted(p)) for p in zip(originals.tolist(), copies.tolist(), strict=True)}
    assert pairs == expected


def test_the_union_find_answers_many_pairs_as_it_answers_one() -> None:
    rng = np.random.default_rng(7)
    ids = np.sort(rng.choice(10_000, size=2_000, replace=False)).astype(np.int64)
    groups = UnionFind(ids)
    for a, b in rng.choice(ids, size=(1_500, 2)).tolist():
        groups.union(a, b)
    first, second = rng.choice(ids, size=3_000), rng.choice(ids, size=3_000)
    first[:10] = 10_001  # ids outside the set are never in one group
    one_by_one = [groups.same(a, b) for a, b in zip(first.tolist(), second.tolist(), strict=True)]
    assert groups.same_many(first, second).tolist() == one_by_one
    assert 0 < sum(one_by_one) < len(one_by_one) - 10
