"""The whitened search space: the transform itself, and a store that fits, persists, refits and uses it."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
import pytest
from indexing_support import save_tiny_model, write_photos
from typer.testing import CliRunner

from latentdex.errors import StoreError
from latentdex.indexer.duplicates import duplicates_of
from latentdex.indexer.pipeline import IndexOptions, index_folder
from latentdex.indexer.store import ImageRecord, LatentStore
from latentdex.indexer.whitening import (
    DUPLICATE_POWER,
    MIN_FIT_PER_DIMENSION,
    REFIT_SHARE,
    VARIANCE_FLOOR,
    WHITENING_POWER,
    Whitening,
    describe,
    needs_fit,
)
from latentdex.models.inference import LatentCodec
from latentdex.service.cli import app

DIM = 16
MODEL = "vae-test"
FIT_AT = MIN_FIT_PER_DIMENSION * DIM


@pytest.fixture(autouse=True)
def _one_faiss_thread() -> None:
    faiss.omp_set_num_threads(1)


def records(n: int, start: int = 0) -> list[ImageRecord]:
    return [
        ImageRecord(path=f"a/{i:05d}.jpg", size=10 + i, mtime_ns=i, content_hash=f"{i:064x}", model_id=MODEL)
        for i in range(start, start + n)
    ]


MIXING = np.linalg.qr(np.random.default_rng(99).standard_normal((DIM, DIM)))[0]


def skewed_latents(n: int, seed: int = 0) -> np.ndarray:
    """Latents as a VAE gives them: off-centre, a few directions of large variance, many small ones."""
    rng = np.random.default_rng(seed)
    scales = np.geomspace(6.0, 0.5, DIM)
    return ((rng.standard_normal((n, DIM)) * scales) @ MIXING.T + 3.0).astype(np.float32)


def copies_of(latents: np.ndarray, seed: int = 1) -> np.ndarray:
    """Altered copies: moved mostly along the two directions of largest variance, as brightness and
    colour changes move mu, and a little along every other."""
    rng = np.random.default_rng(seed)
    nuisance = (rng.standard_normal((len(latents), 2)) * 4.0) @ MIXING[:, :2].T
    return (latents + nuisance + 0.05 * rng.standard_normal(latents.shape)).astype(np.float32)


def top1(store: LatentStore, queries: np.ndarray, ids: list[int]) -> float:
    found = [row[0].id for row in store.search(queries, 1)]
    return float(np.mean(np.array(found) == np.array(ids)))


# --- the transform ------------------------------------------------------------------------------------


def test_fully_whitened_latents_are_centred_with_unit_variance_on_every_axis() -> None:
    latents = skewed_latents(4000)
    whitening = Whitening.fit(latents, power=DUPLICATE_POWER)
    assert whitening.power == DUPLICATE_POWER == 1.0
    white = whitening.apply(latents)
    assert np.abs(white.mean(axis=0)).max() < 1e-3
    np.testing.assert_allclose(np.cov(white.T), np.eye(DIM), atol=0.02)


def test_the_floor_stops_a_dead_axis_from_being_blown_up() -> None:
    latents = skewed_latents(2000)
    latents[:, 0] = 0.5 + 1e-4 * np.random.default_rng(3).standard_normal(len(latents))  # a collapsed unit
    white = Whitening.fit(latents, power=1.0).apply(latents)
    variances = np.sort(np.var(white, axis=0))
    mean_variance = np.var(latents, axis=0).sum() / DIM
    # the dead axis is scaled by the floor, not by its own deviation: it stays far below 1
    assert variances[0] <= 1.01e-8 / (VARIANCE_FLOOR * mean_variance)
    np.testing.assert_allclose(variances[1:], 1.0, atol=0.05)


def test_half_way_whitening_divides_each_axis_by_the_fourth_root_of_its_variance() -> None:
    latents = skewed_latents(4000)
    whitening = Whitening.fit(latents)
    assert whitening.power == WHITENING_POWER == 0.5  # searches run half-way
    axis_variances = np.sort(np.linalg.eigvalsh(np.cov(latents.T)))[::-1]
    white = whitening.apply(latents)
    # the principal axes stay ordered, with the square root of their variance: the spread is halved in log
    np.testing.assert_allclose(np.var(white, axis=0, ddof=1), np.sqrt(axis_variances), rtol=0.02)
    rotation_only = Whitening.fit(latents, power=0.0).apply(latents)
    np.testing.assert_allclose(np.var(rotation_only, axis=0, ddof=1), axis_variances, rtol=0.02)
    with pytest.raises(ValueError, match="power"):
        Whitening.fit(latents, power=1.5)


def test_a_transform_keeps_its_power_and_one_at_another_power_is_refitted() -> None:
    document = json.loads(Whitening.fit(skewed_latents(500), power=1.0).to_text())
    del document["power"]  # as a store saved it before the power was recorded
    old = Whitening.from_text(json.dumps(document))
    assert old.power == 1.0
    assert needs_fit(500, DIM, old, changes=0)  # the next indexing run refits at the current power
    assert "searches at power 1, duplicates at 1" in describe(old, 0, 500, DIM)
    half = Whitening.from_text(Whitening.fit(skewed_latents(500)).to_text())
    assert half.power == 0.5 and not needs_fit(500, DIM, half, changes=0)
    assert "searches at power 0.5, duplicates at 1" in describe(half, 0, 500, DIM)


@pytest.mark.parametrize("start, target", [(0.5, 1.0), (1.0, 0.5), (0.25, 0.75), (0.5, 0.0)])
def test_one_fit_gives_every_power_as_fitting_at_that_power_would(start: float, target: float) -> None:
    latents = skewed_latents(3000)
    latents[:, 0] = 0.5 + 1e-4 * np.random.default_rng(3).standard_normal(len(latents))  # floored axis
    moved = Whitening.fit(latents, power=start).at_power(target)
    direct = Whitening.fit(latents, power=target)
    assert moved.power == target and moved.fitted_count == direct.fitted_count
    np.testing.assert_allclose(moved.apply(latents), direct.apply(latents), rtol=1e-3, atol=1e-4)


def test_a_rotation_alone_cannot_change_its_power() -> None:
    rotation = Whitening.fit(skewed_latents(500), power=0.0)
    assert rotation.at_power(0.0) is rotation
    with pytest.raises(ValueError, match="power 0"):
        rotation.at_power(1.0)
    with pytest.raises(ValueError, match="power"):
        Whitening.fit(skewed_latents(500)).at_power(1.5)


def test_the_transform_round_trips_through_text_and_keeps_its_id() -> None:
    whitening = Whitening.fit(skewed_latents(500))
    again = Whitening.from_text(whitening.to_text())
    assert again.id == whitening.id and again.fitted_count == 500 and again.power == whitening.power
    np.testing.assert_array_equal(again.projection, whitening.projection)
    assert Whitening.fit(skewed_latents(500, seed=5)).id != whitening.id


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.update(version=99),
        lambda d: d.update(mean="!!"),
        lambda d: d.update(dim=3),
        lambda d: d.pop("projection"),
        lambda d: d.update(power=2.0),
    ],
    ids=["version", "base64", "shape", "missing", "power"],
)
def test_a_damaged_transform_is_a_store_error(damage) -> None:
    document = json.loads(Whitening.fit(skewed_latents(100)).to_text())
    damage(document)
    with pytest.raises(StoreError, match="whitening"):
        Whitening.from_text(json.dumps(document))


def test_fitting_needs_two_latents() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        Whitening.fit(skewed_latents(1))


# --- the store ----------------------------------------------------------------------------------------


def test_whitening_finds_copies_that_cosine_on_raw_latents_confuses(tmp_path: Path) -> None:
    latents = skewed_latents(1500)
    queries = copies_of(latents[:300])
    rates = {}
    for metric in ("whitened", "cosine"):
        with LatentStore.create(tmp_path / metric, model_id=MODEL, latent_dim=DIM, metric=metric) as store:
            ids = store.upsert_images(records(1500), latents)
            store.flush()
            rates[metric] = top1(store, queries, ids[:300])
    # searches run half-way whitened; the duplicates' space, fully whitened, finds them all but a few
    assert rates["whitened"] >= 0.93 and rates["whitened"] > rates["cosine"] + 0.15, rates


@contextmanager
def store_with_copies(
    folder: Path, copied: int
) -> Iterator[tuple[LatentStore, list[int], np.ndarray, np.ndarray]]:
    """A whitened store of 1500 skewed latents then altered copies of the first `copied`: the store, its
    ids, the copies, and every image's vector in the duplicates' space."""
    latents = skewed_latents(1500)
    copies = copies_of(latents[:copied])
    with LatentStore.create(folder, model_id=MODEL, latent_dim=DIM) as store:
        ids = store.upsert_images(records(1500 + copied), np.concatenate([latents, copies]))
        store.flush()
        assert store.whitening is not None and store.whitening.power == WHITENING_POWER
        found, vectors, metric = store.duplicate_vectors(np.array(ids))
        assert metric == "cosine" and found.tolist() == ids
        yield store, ids, copies, vectors


def test_duplicates_are_measured_fully_whitened_where_copies_sit_nearest(tmp_path: Path) -> None:
    with store_with_copies(tmp_path / "s", 300) as (store, ids, copies, vectors):
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
        similarity = vectors @ vectors.T
        np.fill_diagonal(similarity, -np.inf)
        nearest = similarity[1500:].argmax(axis=1)
        full_rate = float(np.mean(nearest == np.arange(300)))
        half_rate = top1(store, copies, ids[:300])
        assert full_rate >= 0.98 and full_rate > half_rate, (full_rate, half_rate)
        # the groups' distances are the same space's
        matrix = store.duplicate_distances(ids[:2] + ids[1500:1502])
        np.testing.assert_allclose(matrix[0, 2], 1 - similarity[1500, 0], atol=1e-5)


def test_a_store_fits_once_it_has_enough_latents_and_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    with LatentStore.create(folder, model_id=MODEL, latent_dim=DIM) as store:
        store.upsert_images(records(FIT_AT - 1), skewed_latents(FIT_AT - 1))
        store.flush()
        assert store.whitening is None
        assert json.loads((folder / "manifest.json").read_text())["whitening"]["id"] is None
        store.upsert_images(records(1, start=FIT_AT), skewed_latents(1, seed=9))
        store.flush()
        assert store.whitening is not None and store.whitening.fitted_count == FIT_AT
        fitted_id = store.whitening.id
        assert store.verify().ok  # FAISS holds the whitened latents
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["metric"] == "whitened"
    assert manifest["whitening"] == {
        "id": fitted_id,
        "version": 1,
        "fitted_count": FIT_AT,
        "changes_since_fit": 0,
    }


def test_the_transform_persists_and_a_reader_searches_as_the_writer_did(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    latents = skewed_latents(400)
    queries = copies_of(latents[:50])
    with LatentStore.create(folder, model_id=MODEL, latent_dim=DIM) as store:
        store.upsert_images(records(400), latents)
        store.flush()
        written = [[(m.id, round(m.distance, 5)) for m in row] for row in store.search(queries, 5)]
        fitted_id = store.whitening.id
    with LatentStore.open(folder, read_only=True) as reader:
        assert reader.whitening.id == fitted_id
        read = [[(m.id, round(m.distance, 5)) for m in row] for row in reader.search(queries, 5)]
    assert read == written


def test_a_refit_comes_when_a_share_of_the_library_has_changed(tmp_path: Path) -> None:
    with LatentStore.create(tmp_path / "s", model_id=MODEL, latent_dim=DIM) as store:
        ids = store.upsert_images(records(500), skewed_latents(500))
        store.flush()
        first = store.whitening.id
        below = int(REFIT_SHARE * 500) - 11
        store.upsert_images(records(below, start=500), skewed_latents(below, seed=2))
        store.remove_images(ids[:10])
        store.flush()
        assert store.whitening.id == first and store.whitening_changes == below + 10
        store.remove_images(ids[10:12])  # now past the share
        store.flush()
        assert store.whitening.id != first and store.whitening.fitted_count == 500 + below - 12
        assert store.whitening_changes == 0 and store.verify().ok


def test_every_change_is_counted_in_its_own_transaction(tmp_path: Path) -> None:
    """Removed images and images that failed after having a latent count towards the refit, and the tally
    is in the catalog as soon as the change is, so a reader (or the next writer) sees the same count."""
    folder = tmp_path / "s"
    with LatentStore.create(folder, model_id=MODEL, latent_dim=DIM) as store:
        ids = store.upsert_images(records(200), skewed_latents(200))
        store.flush()
        lost = [replace(r, failure_reason="now unreadable") for r in records(3, start=190)]
        never_indexed = replace(records(1, start=900)[0], failure_reason="not an image")
        store.mark_failed([*lost, never_indexed])
        store.remove_images(ids[:4])
        assert store.whitening_changes == 3 + 4
        on_disk = sqlite3.connect(folder / "catalog.sqlite").execute(
            "SELECT value FROM store_meta WHERE key = 'whitening_changes'"
        )
        assert on_disk.fetchone() == ("7",)
    with LatentStore.open(folder, read_only=True) as reader:
        assert reader.whitening_changes == 7


def test_reencoding_drops_the_transform_and_fits_a_new_one(tmp_path: Path) -> None:
    with LatentStore.create(tmp_path / "s", model_id=MODEL, latent_dim=DIM) as store:
        store.upsert_images(records(100), skewed_latents(100))
        store.flush()
        assert store.whitening is not None
        store.reset_model("vae-new", DIM)
        assert store.whitening is None
        new = [ImageRecord(**{**vars(r), "model_id": "vae-new"}) for r in records(100)]
        store.upsert_images(new, skewed_latents(100, seed=4))
        store.flush()
        assert store.whitening is not None and store.whitening.fitted_count == 100 and store.verify().ok


def test_vectors_built_with_another_transform_are_rebuilt_on_open(tmp_path: Path) -> None:
    """A writer killed between fitting and saving leaves the catalog's transform and the file apart."""
    folder = tmp_path / "s"
    latents = skewed_latents(300)
    with LatentStore.create(folder, model_id=MODEL, latent_dim=DIM) as store:
        ids = store.upsert_images(records(300), latents)
    with sqlite3.connect(folder / "catalog.sqlite") as db:
        db.execute("UPDATE store_meta SET value = 'whiten-0000' WHERE key = 'vectors_whitening'")
    with LatentStore.open(folder) as store:
        assert store.last_reconcile.rebuilt
        assert any("another whitening" in note for note in store.last_reconcile.notes)
        assert store.verify().ok
        assert top1(store, copies_of(latents[:50]), ids[:50]) >= 0.95


def test_an_old_cosine_store_keeps_answering_until_rebuilt_as_whitened(tmp_path: Path) -> None:
    folder = tmp_path / "s"
    latents = skewed_latents(1000)
    queries = copies_of(latents[:200])
    with LatentStore.create(folder, model_id=MODEL, latent_dim=DIM, metric="cosine") as store:
        ids = store.upsert_images(records(1000), latents)
        store.flush()
        assert store.whitening is None
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.pop("whitening")  # as a store made before the whitened metric has it
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with LatentStore.open(folder, read_only=True) as old:
        assert old.metric == "cosine" and old.info.whitening is None
        before = top1(old, queries, ids[:200])
    result = CliRunner().invoke(app, ["rebuild", str(folder), "--metric", "whitened"])
    assert result.exit_code == 0, result.output
    assert "whitened metric" in result.output and "fitted on 1000 images" in result.output
    with LatentStore.open(folder, read_only=True) as new:
        assert new.metric == "whitened" and new.info.whitening["fitted_count"] == 1000
        after = top1(new, queries, ids[:200])
        assert new.verify().ok
    assert after > before
    stats = CliRunner().invoke(app, ["stats", str(folder)])
    assert "metric:      whitened" in stats.output and "whitening:   whiten-" in stats.output


def test_an_unknown_metric_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="metric"):
        LatentStore.create(tmp_path / "s", model_id=MODEL, latent_dim=DIM, metric="manhattan")
    with (
        LatentStore.create(tmp_path / "t", model_id=MODEL, latent_dim=DIM) as store,
        pytest.raises(ValueError, match="unknown metric"),
    ):
        store.rebuild(metric="manhattan")


def test_an_indexing_run_fits_the_whitening_once_at_its_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    fits: list[int] = []
    original = Whitening.fit.__func__

    def counting_fit(cls, latents, *args, **kwargs):  # type: ignore[no-untyped-def]
        fits.append(len(latents))
        return original(cls, latents, *args, **kwargs)

    monkeypatch.setattr(Whitening, "fit", classmethod(counting_fit))
    write_photos(tmp_path / "photos", 40)
    codec = LatentCodec.load(save_tiny_model(tmp_path / "model"))
    options = IndexOptions(workers=1, batch_size=4, flush_every=1)  # a save after every batch of 4
    index_folder(tmp_path / "photos", tmp_path / "store", codec, options)
    assert fits == [40]
    with LatentStore.open(tmp_path / "store", read_only=True) as store:
        assert store.whitening.fitted_count == 40 and store.info.whitening["fitted_count"] == 40


def test_a_group_for_one_image_links_by_the_duplicate_space_not_the_search(tmp_path: Path) -> None:
    with store_with_copies(tmp_path / "s", 40) as (store, ids, copies, vectors):
        full = np.clip(1 - vectors @ vectors.T, 0, 2)
        threshold = float(np.median(full[np.arange(1500, 1540), np.arange(40)]))
        differs = 0
        for row in range(1500, 1540):
            group = duplicates_of(store, ids[row], threshold)
            linked = set() if group is None else set(group.ids) - {ids[row]}
            expected = {ids[i] for i in np.flatnonzero(full[row] <= threshold) if i != row}
            assert linked == expected, row
            by_search = {
                m.id
                for m in store.search(copies[[row - 1500]], 30)[0]
                if m.distance <= threshold and m.id != ids[row]
            }
            differs += by_search != expected
        assert differs > 0  # the search's half-way distances would have linked other images


def test_a_store_fitted_fully_by_an_earlier_build_answers_until_its_next_save_refits_it(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "s"
    latents = skewed_latents(300)
    with LatentStore.create(folder, model_id=MODEL, latent_dim=DIM) as store:
        ids = store.upsert_images(records(300), latents)
    document = json.loads(Whitening.fit(latents, power=1.0).to_text())
    del document["power"]  # as an earlier build saved it
    with sqlite3.connect(folder / "catalog.sqlite") as db:
        db.execute("UPDATE store_meta SET value = ? WHERE key = 'whitening'", (json.dumps(document),))
    with LatentStore.open(folder, read_only=True) as store:  # a server: searches in the transform's space
        assert store.whitening.power == 1.0
        assert top1(store, copies_of(latents[:50]), ids[:50]) >= 0.95
        _, vectors, _ = store.duplicate_vectors(np.array(ids))
        full = Whitening.fit(latents, power=1.0).apply(latents)
        np.testing.assert_allclose(vectors, full / np.linalg.norm(full, axis=1, keepdims=True), atol=1e-5)
    with LatentStore.open(folder) as store:
        store.flush()  # the save that ends an indexing run
        assert store.whitening.power == WHITENING_POWER and store.whitening_changes == 0
        assert store.verify().ok
        assert top1(store, copies_of(latents[:50]), ids[:50]) >= 0.95
