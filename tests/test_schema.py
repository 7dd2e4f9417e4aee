"""The catalog schema under Alembic: new catalogs are at the head revision, the migrations build exactly
what the ORM models describe, and catalogs made before Alembic are stamped and upgraded on a writable open."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

import latentdex.indexer.directions  # registers the directions table on the models' metadata
import latentdex.indexer.region_memory  # noqa: F401  (and the region check's remembered pairs)
from latentdex.errors import StoreError
from latentdex.indexer import schema
from latentdex.indexer.catalog import Base, ImageRecord
from latentdex.indexer.store import LatentStore


def test_a_new_store_is_at_the_head_revision_and_matches_the_models(tmp_path: Path) -> None:
    LatentStore.create(tmp_path / "store", model_id="vae-a", latent_dim=4).close()
    engine = create_engine(f"sqlite:///{tmp_path / 'store' / 'catalog.sqlite'}")
    try:
        assert schema.current_revision(engine) == schema.head_revision() == "0006"
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        # SQLite reports no server-side details that differ; anything listed is a real drift
        assert differences == [], differences
    finally:
        engine.dispose()


def test_a_catalog_made_before_alembic_is_stamped_and_upgraded_on_a_writable_open(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    LatentStore.create(folder, model_id="vae-a", latent_dim=4).close()
    with sqlite3.connect(folder / "catalog.sqlite") as db:  # as the first builds left it
        db.execute("DROP TABLE alembic_version")
        db.execute("DROP TABLE directions")
        db.execute("DROP TABLE region_overlaps")
        db.execute("ALTER TABLE images DROP COLUMN perceptual_hash")
        db.execute("ALTER TABLE images DROP COLUMN region_hashes")
        db.execute("ALTER TABLE images DROP COLUMN alignment_thumbnail")
    engine = create_engine(f"sqlite:///{folder / 'catalog.sqlite'}")
    try:
        with LatentStore.open(folder, read_only=True):
            assert schema.current_revision(engine) is None  # readers change nothing
        with LatentStore.open(folder) as store:
            assert store.verify().ok
        assert schema.current_revision(engine) == schema.head_revision()
        assert inspect(engine).has_table("directions") and inspect(engine).has_table("region_overlaps")
        columns = {column["name"] for column in inspect(engine).get_columns("images")}
        assert {"perceptual_hash", "region_hashes", "alignment_thumbnail"} <= columns
    finally:
        engine.dispose()


def test_the_fast_path_head_is_alembics_head() -> None:
    assert schema.head_revision() == schema.HEAD_REVISION


def test_opening_a_current_store_does_not_import_alembic(tmp_path: Path) -> None:
    LatentStore.create(tmp_path / "store", model_id="vae-a", latent_dim=4).close()
    script = (
        "import sys\n"
        "from latentdex.indexer.store import LatentStore\n"
        f"LatentStore.open({str(tmp_path / 'store')!r}).close()\n"
        "assert not any(name.split('.')[0] == 'alembic' for name in sys.modules), 'alembic imported'\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


def test_a_catalog_one_revision_behind_is_upgraded_and_one_ahead_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    LatentStore.create(folder, model_id="vae-a", latent_dim=4).close()
    with sqlite3.connect(folder / "catalog.sqlite") as db:
        db.execute("DROP TABLE directions")
        db.execute("ALTER TABLE images DROP COLUMN perceptual_hash")
        db.execute("ALTER TABLE images DROP COLUMN region_hashes")
        db.execute("ALTER TABLE images DROP COLUMN alignment_thumbnail")
        db.execute("DROP TABLE region_overlaps")
        db.execute("UPDATE alembic_version SET version_num = '0001'")
    with LatentStore.open(folder) as store:
        assert store.verify().ok
    engine = create_engine(f"sqlite:///{folder / 'catalog.sqlite'}")
    try:
        assert schema.current_revision(engine) == schema.HEAD_REVISION
        assert inspect(engine).has_table("directions")
    finally:
        engine.dispose()
    with sqlite3.connect(folder / "catalog.sqlite") as db:
        db.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(StoreError, match="newer latentdex"):
        LatentStore.open(folder)


def test_a_catalog_before_perceptual_hashes_is_read_as_it_is_and_has_none(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    hashes = np.array([2**64 - 1, 0, 1, 2**63, 12345, 2**40], np.uint64)
    with LatentStore.create(folder, model_id="vae-a", latent_dim=4) as store:
        record = ImageRecord(path="a.jpg", size=1, mtime_ns=1, content_hash="ab" * 32, model_id="vae-a")
        [image_id] = store.upsert_images([record], np.ones((1, 4), np.float32), [hashes])
        found, known = store.perceptual_hashes(np.array([image_id]))
        assert known.tolist() == [True] and found[0].tolist() == hashes.tolist()  # unsigned, bit for bit
    with sqlite3.connect(folder / "catalog.sqlite") as db:  # as the builds before hashes left it
        db.execute("ALTER TABLE images DROP COLUMN perceptual_hash")
        db.execute("ALTER TABLE images DROP COLUMN region_hashes")
        db.execute("ALTER TABLE images DROP COLUMN alignment_thumbnail")
        db.execute("DROP TABLE region_overlaps")
        db.execute("UPDATE alembic_version SET version_num = '0002'")
    with LatentStore.open(folder, read_only=True) as store:  # a server: it reads, it does not migrate
        assert [r.path for r in store.get([image_id])] == ["a.jpg"]
        assert store.perceptual_hashes(np.array([image_id]))[1].tolist() == [False]
        assert store.alignment_thumbnails([image_id]) == {}
    with LatentStore.open(folder) as store:  # a writer brings it to the head; the old row has no hash
        assert store.perceptual_hashes(np.array([image_id]))[1].tolist() == [False]
        assert store.alignment_thumbnails([image_id]) == {}
