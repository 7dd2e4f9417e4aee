"""The region check's memory: what pairs of files gave, kept in a real catalog by their content hashes, so
that a second run over a real indexed library reads no file and links the same pairs."""

from __future__ import annotations

import shutil
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentdex.indexer.catalog import ImageRecord
from latentdex.indexer.duplicates import (
    find_duplicates,
    resolve_hash_rule,
    resolve_region_rule,
    resolve_threshold,
)
from latentdex.indexer.pipeline import IndexOptions, index_folder
from latentdex.indexer.region_links import FeatureSource, RegionCheck
from latentdex.indexer.region_match import METHOD
from latentdex.indexer.region_memory import pair_key
from latentdex.indexer.region_rule import LocalFeatures, Overlap
from latentdex.indexer.store import LatentStore
from latentdex.models.inference import LatentCodec
from latentdex.service.duplicate_files import indexed_file_features
from latentdex.service.sample_collection import write_sample_collection

HASH_A, HASH_B, HASH_C = "a" * 64, "b" * 64, "c" * 64


@dataclass(frozen=True)
class Library:
    root: Path
    store: Path

    def store_copy(self, folder: Path) -> Path:
        """A copy of the store (its catalog and vectors) that a test may change."""
        copy = folder / "store"
        shutil.copytree(self.store, copy)
        return copy


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    """A small real library: scenes, an exact copy, crops of four scenes at 80% of each side (pairs the
    region check compares), and two frames of a scene that is not indexed (compared, not linked)."""
    folder = tmp_path_factory.mktemp("memory")
    root = folder / "photos"
    scenes = write_sample_collection(root / "scenes", count=24, size=(320, 240))
    copies = root / "copies"
    copies.mkdir()
    shutil.copy(scenes[0], copies / scenes[0].name)
    for number in (3, 7, 11, 16):
        Image.open(scenes[number]).convert("RGB").crop((32, 24, 288, 216)).save(
            copies / f"cropped-{number}.png"
        )
    [wide] = write_sample_collection(folder / "not-indexed", count=1, seed=1, size=(320, 240))
    burst = Image.open(wide).convert("RGB")
    burst.crop((0, 0, 272, 204)).save(copies / "burst-1.png")
    burst.crop((48, 36, 320, 240)).save(copies / "burst-2.png")
    store = folder / "store"
    index_folder(root, store, LatentCodec.load(), IndexOptions(workers=1))
    return Library(root, store)


class Stopped(Exception):
    """A run stopped part-way (as a cancelled call or a passed deadline stops the server's)."""


@dataclass
class Run:
    """One duplicate-finding run with the region check: what it checked, the files it read, the groups."""

    check: RegionCheck
    files_read: list[str] = field(default_factory=list)
    groups: list[list[str]] = field(default_factory=list)


runs: list[Run] = []  # every run, also one that raised


def find_with_check(
    library: Library, store_folder: Path, *, remember: bool = True, source: FeatureSource | None = None
) -> Run:
    source = source or indexed_file_features(library.root)
    with LatentStore.open(store_folder, read_only=True) as store:
        space = store.distance_space
        rule = resolve_region_rule("near", None, space)
        assert rule is not None

        def counted(record: ImageRecord) -> LocalFeatures | None:
            run.files_read.append(record.path)
            return source(record)

        run = Run(RegionCheck(rule, counted, remember=remember))
        runs.append(run)
        report = find_duplicates(
            store,
            resolve_threshold("near", None, space),
            hash_rule=resolve_hash_rule("near", None, space),
            regions=run.check,
        )
    run.groups = [[m.path for m in group.members] for group in report.groups]
    return run


def catalog_sql(store_folder: Path, statement: str, *parameters: object) -> None:
    with sqlite3.connect(store_folder / "catalog.sqlite") as connection:
        connection.execute(statement, parameters)


def test_a_second_run_reads_no_file_and_links_the_same_pairs(library: Library, tmp_path: Path) -> None:
    store = library.store_copy(tmp_path)
    first = find_with_check(library, store)
    assert first.check.pairs_checked > 0 and first.files_read
    second = find_with_check(library, store)
    assert second.files_read == [] and second.check.pairs_checked == 0
    assert second.check.pairs_remembered == first.check.pairs_checked + first.check.pairs_remembered
    assert second.groups == first.groups and second.check.pairs_linked == first.check.pairs_linked
    forgetful = find_with_check(library, store, remember=False)  # without memory: the files again
    assert forgetful.check.pairs_checked == first.check.pairs_checked and forgetful.groups == first.groups


def test_an_edited_file_is_checked_again_and_another_method_s_rows_are_not_used(
    library: Library, tmp_path: Path
) -> None:
    store = library.store_copy(tmp_path)
    first = find_with_check(library, store)
    edited = first.files_read[0]
    # what a re-index of an edited file leaves: the same path under a new content hash
    catalog_sql(store, "UPDATE images SET content_hash = ? WHERE path = ?", HASH_C, edited)
    again = find_with_check(library, store)
    assert edited in again.files_read and 0 < again.check.pairs_checked < first.check.pairs_checked
    assert again.groups == first.groups
    catalog_sql(store, "UPDATE region_overlaps SET method = 'an older method'")
    redone = find_with_check(library, store)
    assert redone.check.pairs_checked == first.check.pairs_checked and redone.groups == first.groups


def test_overlaps_are_kept_by_the_pair_of_hashes_in_either_order(tmp_path: Path) -> None:
    with LatentStore.create(tmp_path / "store", model_id="vae-test", latent_dim=8) as store:
        memory = store.region_memory
        assert memory.usable and memory.recall([pair_key(HASH_A, HASH_B)]) == {}
        memory.remember({pair_key(HASH_B, HASH_A): Overlap(42, 0.99, 0.8)})
        assert pair_key(HASH_B, HASH_A) == pair_key(HASH_A, HASH_B) == (HASH_A, HASH_B)
        assert memory.recall([(HASH_A, HASH_B), (HASH_A, HASH_C)]) == {
            (HASH_A, HASH_B): Overlap(42, 0.99, 0.8)
        }
        memory.remember({(HASH_A, HASH_B): Overlap(7, 0.5, -1.0)})  # checked again: the newer result
        assert memory.recall([(HASH_A, HASH_B)]) == {(HASH_A, HASH_B): Overlap(7, 0.5, -1.0)}
    with sqlite3.connect(tmp_path / "store" / "catalog.sqlite") as connection:
        assert connection.execute("SELECT method FROM region_overlaps").fetchall() == [(METHOD,)]


def test_a_read_only_catalog_from_before_the_memory_is_checked_without_it(
    library: Library, tmp_path: Path
) -> None:
    store = library.store_copy(tmp_path)
    catalog_sql(store, "DROP TABLE region_overlaps")
    catalog_sql(store, "UPDATE alembic_version SET version_num = '0005'")
    first = find_with_check(library, store)
    second = find_with_check(library, store)
    assert first.check.pairs_checked > 0 and second.check.pairs_checked == first.check.pairs_checked
    assert second.check.pairs_remembered == 0 and second.groups == first.groups
    with LatentStore.open(store) as writable:  # a writable open migrates the catalog
        assert writable.region_memory.usable
    assert find_with_check(library, store).check.pairs_checked == first.check.pairs_checked
    assert find_with_check(library, store).check.pairs_checked == 0


def test_a_run_stopped_part_way_keeps_what_it_compared(library: Library, tmp_path: Path) -> None:
    store = library.store_copy(tmp_path)
    whole = find_with_check(library, library.store_copy(tmp_path / "reference"), remember=False)
    files = indexed_file_features(library.root)
    read: list[str] = []

    def stops_after_four_files(record: ImageRecord) -> LocalFeatures | None:
        read.append(record.path)
        if len(read) > 4:
            raise Stopped
        return files(record)

    with pytest.raises(Stopped):
        find_with_check(library, store, source=stops_after_four_files)
    stopped = runs[-1].check
    assert 0 < stopped.pairs_checked < whole.check.pairs_checked
    again = find_with_check(library, store)
    assert again.check.pairs_remembered == stopped.pairs_checked
    assert again.check.pairs_checked == whole.check.pairs_checked - stopped.pairs_checked
    assert again.groups == whole.groups


def test_content_hashes_name_ok_images_alone(tmp_path: Path) -> None:
    with LatentStore.create(tmp_path / "store", model_id="vae-test", latent_dim=4) as store:
        ok = [
            ImageRecord(path=f"{n}.jpg", size=1, mtime_ns=1, content_hash=digest, model_id="vae-test")
            for n, digest in enumerate((HASH_A, HASH_B))
        ]
        ids = store.upsert_images(ok, np.ones((2, 4), np.float32))
        [failed] = store.mark_failed(
            [ImageRecord(path="bad.jpg", size=1, mtime_ns=1, content_hash=HASH_C, failure_reason="corrupt")]
        )
        assert store.content_hashes([*ids, failed, 10**9]) == {ids[0]: HASH_A, ids[1]: HASH_B}


def test_two_runs_at_once_write_the_memory_without_failing(library: Library, tmp_path: Path) -> None:
    """Two reviews at once (two server threads, or the CLI beside a server) both keep what they compared."""
    store = library.store_copy(tmp_path)
    with ThreadPoolExecutor(2) as pool:
        both = list(pool.map(lambda _: find_with_check(library, store), range(2)))
    assert both[0].groups == both[1].groups
    assert all(run.check.pairs_checked + run.check.pairs_remembered > 0 for run in both)
    later = find_with_check(library, store)
    assert later.files_read == [] and later.groups == both[0].groups
