"""Named directions in the store's database: saved, listed, replaced and deleted beside a live store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from latentdex.errors import NotFound, StoreError
from latentdex.indexer.directions import new_direction
from latentdex.indexer.store import ImageRecord, LatentStore

DIM = 8


def test_directions_round_trip_per_model_and_leave_images_alone(tmp_path: Path) -> None:
    with LatentStore.create(tmp_path / "store", model_id="vae-a", latent_dim=DIM) as store:
        store.upsert_images(
            [ImageRecord(path="a.png", size=1, mtime_ns=1, content_hash="0" * 64, model_id="vae-a")],
            np.ones((1, DIM), np.float32),
        )
        store.flush()
    reader = LatentStore.open(tmp_path / "store", read_only=True)  # as a server holds it
    book = reader.directions
    try:
        assert book.list() == []
        vector = np.arange(DIM, dtype=np.float32)
        book.save(new_direction("warmer", "vae-a", vector, "probe", 0.93, (12, 10), "sunsets vs noon"))
        book.save(new_direction("warmer", "vae-b", -vector, "mean_difference", None, (3, 3)))
        got = book.get("warmer", "vae-a")
        assert np.array_equal(got.vector, vector) and got.method == "probe" and got.separation == 0.93
        assert (got.positive_count, got.negative_count, got.description) == (12, 10, "sunsets vs noon")
        assert [d.model_id for d in book.list()] == ["vae-a", "vae-b"]
        assert [d.name for d in book.list("vae-b")] == ["warmer"]
        with pytest.raises(ValueError, match="exists"):
            book.save(new_direction("warmer", "vae-a", vector, "probe", None, (1, 1)))
        book.save(new_direction("warmer", "vae-a", 2 * vector, "probe", None, (1, 1)), replace=True)
        assert np.array_equal(book.get("warmer", "vae-a").vector, 2 * vector)
        book.delete("warmer", "vae-a")
        with pytest.raises(NotFound, match="warmer"):
            book.get("warmer", "vae-a")
        with pytest.raises(NotFound):
            book.delete("warmer", "vae-a")
    finally:
        reader.close()
    with LatentStore.open(tmp_path / "store") as store:  # the store is still consistent and writable
        assert store.verify().ok and store.count() == 1


@pytest.mark.parametrize("name", ["", "-x", "has space", "x" * 65, "semi;colon"])
def test_direction_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError, match="direction names"):
        new_direction(name, "vae-a", np.zeros(DIM), "probe", None, (1, 1))


def test_a_catalog_from_before_directions_says_how_to_migrate_and_a_writable_open_does(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "store"
    LatentStore.create(folder, model_id="vae-a", latent_dim=DIM).close()
    with sqlite3.connect(folder / "catalog.sqlite") as db:  # as revision 0001 left it
        db.execute("DROP TABLE directions")
        db.execute("ALTER TABLE images DROP COLUMN perceptual_hash")
        db.execute("ALTER TABLE images DROP COLUMN region_hashes")
        db.execute("ALTER TABLE images DROP COLUMN alignment_thumbnail")
        db.execute("DROP TABLE region_overlaps")
        db.execute("UPDATE alembic_version SET version_num = '0001'")
    direction = new_direction("warmer", "vae-a", np.ones(DIM), "probe", None, (1, 1))
    with LatentStore.open(folder, read_only=True) as reader:
        assert reader.directions.list() == []
        with pytest.raises(StoreError, match="open the store writable once"):
            reader.directions.save(direction)
    with LatentStore.open(folder) as writer:  # migrates to the head revision: the table is there
        writer.directions.save(direction)
        assert [d.name for d in writer.directions.list()] == ["warmer"]


def test_a_catalog_from_a_newer_build_is_refused_and_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    LatentStore.create(folder, model_id="vae-a", latent_dim=DIM).close()
    with sqlite3.connect(folder / "catalog.sqlite") as db:
        db.execute("UPDATE alembic_version SET version_num = '0999'")
    for read_only in (True, False):
        with pytest.raises(StoreError, match="made by a newer latentdex"):
            LatentStore.open(folder, read_only=read_only)
    with sqlite3.connect(folder / "catalog.sqlite") as db:
        assert db.execute("SELECT version_num FROM alembic_version").fetchone() == ("0999",)


def test_a_sqlite_file_that_is_not_a_catalog_is_refused_and_not_migrated(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    LatentStore.create(folder, model_id="vae-a", latent_dim=DIM).close()
    (folder / "catalog.sqlite").unlink()
    with sqlite3.connect(folder / "catalog.sqlite") as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(StoreError, match=r"not a (readable )?latentdex catalog"):
        LatentStore.open(folder)
    with sqlite3.connect(folder / "catalog.sqlite") as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"notes"}
