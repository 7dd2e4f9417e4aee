"""The catalog on a real PostgreSQL server: indexing, search, filters, directions, verify, and an indexer
writing while a server reads. The server is started for these tests (installed with apt-get if missing);
they are skipped, saying why, only when that cannot be done."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import shape_image
from postgres_support import PostgresServer, start_postgres
from sqlalchemy import create_engine
from typer.testing import CliRunner

import latentdex.indexer.directions  # the directions table on the models' metadata
import latentdex.indexer.region_memory  # noqa: F401  (and the region check's remembered pairs)
from latentdex.errors import StoreError
from latentdex.indexer import schema
from latentdex.indexer.catalog import Base
from latentdex.indexer.pipeline import IndexOptions, index_folder
from latentdex.indexer.region_rule import Overlap
from latentdex.indexer.search_filter import SearchFilter
from latentdex.indexer.store import LatentStore
from latentdex.models.inference import LatentCodec
from latentdex.service.cli import app
from latentdex.service.client import ImageGroup, QueryOptions, connect
from latentdex.service.live_store import LiveStore
from latentdex.service.queries import QueryEngine
from latentdex.service.server import start_server
from latentdex.service.server_config import ServerConfig

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    try:
        server, stop = start_postgres()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"PostgreSQL is not available here: {exc}")
    yield server
    stop()


@pytest.fixture(scope="module")
def codec() -> LatentCodec:
    return LatentCodec.load()


def write_album(folder: Path, names: range, variant: int = 0) -> None:
    for sub in ("beach", "city"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i in names:
        shape_image(i, variant, 64).save(folder / ("beach" if i % 2 else "city") / f"p{i:03d}.png")


def test_index_search_verify_and_reindex_with_the_catalog_in_postgres(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.new_database()
    write_album(tmp_path / "photos", range(20))
    args = [
        "index",
        str(tmp_path / "photos"),
        "--store",
        str(tmp_path / "store"),
        "--db",
        url,
        "--workers",
        "1",
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "20 new" in first.output
    manifest = json.loads((tmp_path / "store" / "manifest.json").read_text())
    assert manifest["database"] == url and not (tmp_path / "store" / "catalog.sqlite").exists()
    again = runner.invoke(app, args)
    assert "0 new, 0 changed, 20 unchanged" in again.output
    stats = runner.invoke(app, ["stats", str(tmp_path / "store")])
    assert f"catalog:     {url}" in stats.output and "20 ok" in stats.output
    verify = runner.invoke(app, ["verify", str(tmp_path / "store")])
    assert verify.exit_code == 0 and "consistent: 20 ok images" in verify.output
    with LatentStore.open(tmp_path / "store", read_only=True) as store:
        ids = [entry.id for entry in store.entries()]
        hits = store.search(store.latents(ids), 1)
        assert [row[0].id for row in hits] == ids
        beach = store.search(store.latents(ids[:2]), 5, where=SearchFilter(path_prefix="beach/"))
        assert all(len(row) == 5 for row in beach)
        assert {r.path.split("/")[0] for r in store.get([m.id for row in beach for m in row])} == {"beach"}
        assert len(store.select_ids(path_globs=["city/p00[0-4].png"])) == 3  # 000, 002, 004


def test_a_second_store_cannot_take_a_database_that_holds_one(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.new_database()
    LatentStore.create(tmp_path / "a", model_id="vae-x", latent_dim=8, database=url).close()
    with LatentStore.open(tmp_path / "a") as store:
        store.start_run("/photos")
    with pytest.raises(StoreError, match="already holds"):
        LatentStore.create(tmp_path / "b", model_id="vae-x", latent_dim=8, database=url)


def test_an_indexer_writes_while_a_server_reads_and_directions_live_in_postgres(
    postgres: PostgresServer, tmp_path: Path, codec: LatentCodec
) -> None:
    url = postgres.new_database()
    photos, store = tmp_path / "photos", tmp_path / "store"
    write_album(photos, range(12))
    index_folder(photos, store, codec, IndexOptions(workers=1, database=url))
    live = LiveStore(store, check_interval=0.02)
    running = start_server(QueryEngine(codec, live), ServerConfig(port=0))
    errors: list[Exception] = []
    stop = threading.Event()

    def keep_querying() -> None:
        with connect(f"127.0.0.1:{running.port}") as client:
            latent = client.encode(photos / "city" / "p000.png")
            while not stop.is_set():
                try:
                    matches = client.query_by_latent(latent, 3, QueryOptions(previews=True)).matches
                    assert matches[0].path == "city/p000.png"
                except Exception as exc:  # any failure is what this test is about
                    errors.append(exc)

    worker = threading.Thread(target=keep_querying)
    worker.start()
    try:
        write_album(photos, range(12, 30), variant=2)
        report = index_folder(photos, store, codec, IndexOptions(workers=1, batch_size=2, flush_every=1))
        assert report.counts.new == 18
        with connect(f"127.0.0.1:{running.port}") as client:
            for _ in range(500):
                if client.info().image_count == 30:
                    break
                threading.Event().wait(0.02)
            assert client.info().image_count == 30
            info = client.create_direction(
                "beachy", ImageGroup(path_globs=["beach/*"]), ImageGroup(path_globs=["city/*"])
            )
            assert (info.positive_count, info.negative_count) == (15, 15)
            assert [d.name for d in client.list_directions()] == ["beachy"]
            frames = client.edit(photos / "city" / "p004.png", "beachy", [0.0, 1.0])
            assert len(frames) == 2 and not np.allclose(frames[0].latent, frames[1].latent)
        # the server's records in memory, read from PostgreSQL, are the catalog's
        with live.use() as opened, LatentStore.open(store, read_only=True) as plain:
            table = opened.record_table
            from_catalog = plain.hits(range(1, 100), with_latents=False)
            assert table is not None and len(from_catalog) == 30
            tabled = table.records(sorted(from_catalog))
            assert len(tabled) >= 12 and all(tabled[i] == from_catalog[i][0] for i in tabled)
    finally:
        stop.set()
        worker.join()
        running.stop(0)
        live.close()
    assert errors == []


def test_the_migrations_build_what_the_models_describe_in_postgres(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.new_database()
    LatentStore.create(tmp_path / "store", model_id="vae-a", latent_dim=4, database=url).close()
    engine = create_engine(url)
    try:
        assert schema.current_revision(engine) == schema.head_revision()
        with engine.connect() as connection:
            assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    finally:
        engine.dispose()


def test_the_region_check_s_memory_lives_in_postgres(postgres: PostgresServer, tmp_path: Path) -> None:
    url = postgres.new_database()
    first, second = "a" * 64, "b" * 64
    LatentStore.create(tmp_path / "store", model_id="vae-a", latent_dim=4, database=url).close()
    with LatentStore.open(tmp_path / "store", read_only=True) as reader:  # a server's, or `duplicates`
        reader.region_memory.remember({(first, second): Overlap(30, 1.0, 0.7)})
        reader.region_memory.remember({(first, second): Overlap(12, 0.98, 0.4)})  # checked again
    with LatentStore.open(tmp_path / "store", read_only=True) as reader:
        assert reader.region_memory.recall([(first, second)]) == {(first, second): Overlap(12, 0.98, 0.4)}


def test_an_indexer_killed_mid_run_leaves_a_postgres_store_the_next_run_completes(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    url = postgres.new_database()
    photos, store = tmp_path / "photos", tmp_path / "store"
    write_album(photos, range(40))
    command = [
        sys.executable,
        "-m",
        "latentdex.service.cli",
        "index",
        str(photos),
        "--store",
        str(store),
        "--db",
        url,
    ]
    command += ["--workers", "1", "--batch-size", "2", "--flush-every", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None and _images_in(url) < 6:
            time.sleep(0.01)
        assert process.poll() is None, "the run ended before it could be killed"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    assert 0 < _images_in(url) < 40
    final = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    verify = runner.invoke(app, ["verify", str(store)])
    assert verify.exit_code == 0 and "consistent: 40 ok images" in verify.output, verify.output
    with LatentStore.open(store, read_only=True) as opened:
        assert len({entry.path for entry in opened.entries()}) == len(opened.entries()) == 40
        assert [run.status for run in opened.runs()] == ["interrupted", "complete"]


def _images_in(url: str) -> int:
    """How many image rows the catalog database holds (0 before its tables exist)."""
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as db:
        try:
            return db.execute("SELECT count(*) FROM images").fetchone()[0]
        except psycopg.errors.UndefinedTable:
            return 0
