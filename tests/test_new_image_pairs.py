"""The region check at index time: `latentdex index` compares the files of the new images' candidate pairs
and keeps what they gave, so that a duplicates report afterwards reads no file (the generated library of
`test_duplicates`: copies, crops found only by their files, a burst)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from test_duplicates import NEAR_GROUPS_WITH_FILES, REGION_GROUPS, Library, build_library
from typer.testing import CliRunner

from latentdex.errors import INTERRUPTED
from latentdex.indexer import new_image_pairs as new_image_pairs_module
from latentdex.indexer.catalog import ImageRecord
from latentdex.indexer.duplicates import HASH_RULES, REGION_RULES, find_duplicates, resolve_threshold
from latentdex.indexer.new_image_pairs import new_image_pairs
from latentdex.indexer.region_links import RegionCheck
from latentdex.indexer.store import LatentStore
from latentdex.service import duplicate_files
from latentdex.service.cli import app
from latentdex.service.duplicate_files import region_check

pytestmark = pytest.mark.slow
runner = CliRunner()
REACH = REGION_RULES["near"]["whitened"].max_distance


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Library:
    return build_library(tmp_path_factory.mktemp("new-image-pairs"))


def compared_by_a_report(store: LatentStore) -> set[frozenset[int]]:
    """The pairs whose files a `near` report compares, with nothing remembered."""
    check = region_check("near", None, store.distance_space, store.indexed_root())
    assert isinstance(check, RegionCheck)
    compared: list[tuple[int, int]] = []
    compare = check._compared

    def spy(fresh: list[tuple[int, int]], *args, **kwargs):  # type: ignore[no-untyped-def]
        compared.extend(fresh)
        return compare(fresh, *args, **kwargs)

    check._compared = spy  # type: ignore[method-assign]
    space = store.distance_space
    report = find_duplicates(
        store, resolve_threshold("near", None, space), hash_rule=HASH_RULES["near"][space], regions=check
    )
    assert len(report.groups) == NEAR_GROUPS_WITH_FILES
    return {frozenset(pair) for pair in compared}


def test_the_new_images_pairs_hold_every_pair_a_report_compares(library: Library) -> None:
    with LatentStore.open(library.store, read_only=True) as store:
        wanted = compared_by_a_report(store)
        every = store.select_ids()
        first, second = new_image_pairs(store, every.tolist(), REACH)
        copies = [i for path, i in library.ids.items() if path.startswith("copies/")]
        some_first, some_second = new_image_pairs(store, copies, REACH)
    found = {frozenset(pair) for pair in zip(first.tolist(), second.tolist(), strict=True)}
    assert len(wanted) > 20 and wanted <= found
    assert len(found) < 3 * len(wanted)  # the pairs the rules link directly are left out
    # new images among older ones: their pairs, including those where an older image has a new one among
    # its nearest but not the other way round
    involving = {pair for pair in wanted if pair & set(copies)}
    some = {frozenset(pair) for pair in zip(some_first.tolist(), some_second.tolist(), strict=True)}
    assert involving and involving <= some
    assert all(pair & set(copies) for pair in some)
    assert set(np.r_[first, second].tolist()) <= set(every.tolist())


def test_a_few_new_images_are_paired_through_the_stores_own_index(
    library: Library, monkeypatch: pytest.MonkeyPatch
) -> None:
    copies = [i for path, i in library.ids.items() if path.startswith("copies/")]

    def measure_all(*args: object) -> None:
        raise AssertionError("a few new images need not measure the whole store")

    with LatentStore.open(library.store, read_only=True) as store:
        wanted = {pair for pair in compared_by_a_report(store) if pair & set(copies)}
        monkeypatch.setattr(new_image_pairs_module, "FEW_NEW_SHARE", 1.0)  # 13 of 283 count as a few
        monkeypatch.setattr(new_image_pairs_module, "range_index", measure_all)
        first, second = new_image_pairs(store, copies, REACH)
    found = {frozenset(pair) for pair in zip(first.tolist(), second.tolist(), strict=True)}
    assert wanted and wanted <= found and all(pair & set(copies) for pair in found)


def test_an_index_run_compares_the_new_images_files_and_a_report_then_reads_none(
    library: Library, tmp_path: Path
) -> None:
    photos, store = tmp_path / "photos", tmp_path / "store"
    shutil.copytree(library.root / "scenes", photos / "scenes")
    first = runner.invoke(app, ["index", str(photos), "--store", str(store)])
    assert first.exit_code == 0, first.output
    assert "candidate pairs of new images compared for the duplicate finder" in first.output
    shutil.copytree(library.root / "copies", photos / "copies")  # the copies arrive later
    second = runner.invoke(app, ["index", str(photos), "--store", str(store)])
    assert second.exit_code == 0, second.output
    line = next(text for text in second.output.splitlines() if text.startswith("files: "))
    assert int(line.split()[1]) > 0 and f"{len(REGION_GROUPS)} crops or edits linked" in line, line
    report = runner.invoke(app, ["duplicates", str(store), "--json"])
    assert report.exit_code == 0, report.output
    found = json.loads(report.stdout)
    assert found["region_check"]["pairs_checked"] == 0 and found["region_check"]["files_read"] == 0
    assert found["region_check"]["pairs_remembered"] > 0
    groups = [[member["path"] for member in group["members"]] for group in found["groups"]]
    assert len(groups) == NEAR_GROUPS_WITH_FILES and all(group in groups for group in REGION_GROUPS)
    again = runner.invoke(app, ["index", str(photos), "--store", str(store)])
    assert again.exit_code == 0 and "files: " not in again.output  # nothing new, nothing compared


def test_no_check_files_leaves_the_comparison_to_the_first_report(library: Library, tmp_path: Path) -> None:
    store = tmp_path / "store"
    result = runner.invoke(app, ["index", str(library.root), "--store", str(store), "--no-check-files"])
    assert result.exit_code == 0, result.output
    assert "files: " not in result.output
    with sqlite3.connect(store / "catalog.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM region_overlaps").fetchone() == (0,)
    report = runner.invoke(app, ["duplicates", str(store), "--json"])
    assert json.loads(report.stdout)["region_check"]["pairs_checked"] > 0


def test_an_older_image_with_a_new_one_among_its_nearest_is_paired_with_it(tmp_path: Path) -> None:
    """A lone older picture near a dense set of new ones: each new one has its 39 siblings nearer than the
    older one, but the older one's 16 nearest are new ones, so a report compares those 16 pairs."""
    rng = np.random.default_rng(3)
    dim, siblings = 8, 40
    axis = np.eye(dim)[0]
    new = axis + 0.05 * np.c_[np.zeros((siblings, 2)), rng.normal(size=(siblings, dim - 2))]
    lone = axis + 0.35 * np.eye(dim)[1]
    far = rng.normal(size=(100, dim))
    latents = np.vstack([far, lone[None], new]).astype(np.float32)
    records = [
        ImageRecord(path=f"{n}.png", size=1, mtime_ns=1, content_hash=f"{n:064x}", model_id="m")
        for n in range(len(latents))
    ]
    with LatentStore.create(tmp_path / "store", model_id="m", latent_dim=dim, metric="cosine") as store:
        ids = np.array(store.upsert_images(records, latents), dtype=np.int64)
        new_ids, lone_id = ids[101:], int(ids[100])
        reach = REGION_RULES["near"][store.distance_space].max_distance
        first, second = new_image_pairs(store, new_ids.tolist(), reach)
    with_lone = {
        int(a if b == lone_id else b) for a, b in zip(first, second, strict=True) if lone_id in (a, b)
    }
    unit = latents / np.linalg.norm(latents, axis=1, keepdims=True)
    nearest_to_lone = set(ids[101:][np.argsort(-(unit[101:] @ unit[100]))[:16]].tolist())
    assert with_lone == nearest_to_lone
    assert all(a in set(new_ids.tolist()) for a in first.tolist())  # pairs start at a new image


def test_ctrl_c_while_comparing_keeps_the_index_and_says_so(
    library: Library, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(duplicate_files, "compare_new_images", interrupted)  # as `index` looks it up
    result = runner.invoke(app, ["index", str(library.root / "copies"), "--store", str(tmp_path / "store")])
    assert result.exit_code == INTERRUPTED, result.output
    assert "comparison stopped; what was compared is kept" in result.output
    with LatentStore.open(tmp_path / "store", read_only=True) as store:
        assert store.vector_count == len([p for p in library.ids if p.startswith("copies/")])
