"""A server's store holds its records in columns: the same records as the catalog's, without SQL."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from latentdex.errors import StoreError
from latentdex.indexer.record_table import RecordTable, UnsupportedRecords
from latentdex.indexer.store import ImageRecord, LatentStore
from latentdex.service.live_store import LiveStore

DIM = 8
MODEL = "vae-t"


def varied_records() -> list[ImageRecord]:
    """Every shape a record takes: full EXIF, none, no hash, no size, a path that is not UTF-8."""
    return [
        ImageRecord(
            path="2024/trip/IMG_0001.jpg",
            size=2_345_678,
            mtime_ns=1_700_000_000_123_456_789,
            content_hash="ab" * 32,
            width=4032,
            height=3024,
            format="JPEG",
            capture_time=datetime(2024, 4, 12, 15, 39, 7, 250_000),
            camera_make="Canon",
            camera_model="EOS R5",
            model_id=MODEL,
        ),
        ImageRecord(path="scan.png", size=10, mtime_ns=0, content_hash=None, model_id=MODEL, format="PNG"),
        ImageRecord(
            path=b"caf\xe9/\xff.gif".decode("utf-8", "surrogateescape"),
            size=0,
            mtime_ns=-5,
            content_hash="0" * 64,
            width=1,
            height=None,
            format="GIF",
            capture_time=datetime(1969, 12, 31, 23, 59, 59),
            camera_make="Canon",
            model_id=MODEL,
        ),
        *(
            ImageRecord(path=f"bulk/{i}.jpg", size=i, mtime_ns=i, content_hash=f"{i:064x}", model_id=MODEL)
            for i in range(40)
        ),
    ]


def make_store(folder: Path, images: list[ImageRecord]) -> None:
    vectors = np.random.default_rng(0).standard_normal((len(images), DIM)).astype(np.float32)
    with LatentStore.create(folder, model_id=MODEL, latent_dim=DIM, metric="cosine") as store:
        store.upsert_images(images, vectors)


def test_the_table_gives_the_catalogs_records_exactly(tmp_path: Path) -> None:
    make_store(tmp_path / "store", varied_records())
    with LatentStore.open(tmp_path / "store", read_only=True) as store:
        ids = sorted(store.hits(range(1, 200), with_latents=False))
        from_catalog = store.hits(ids, with_latents=False)
        table = store.load_record_table()
        assert store.record_table is table and len(table) == len(ids) == 43
        from_table = table.records([*reversed(ids), 10_000, -1])  # unknown ids are left out
        assert from_table.keys() == set(ids)
        for image_id in ids:
            assert from_table[image_id] == from_catalog[image_id][0]
        assert store.hits(ids, with_latents=False) == from_catalog
        assert from_table[ids[0]].indexed_at is not None and from_table[ids[0]].indexed_at.tzinfo == UTC
        assert table.nbytes < 200 * len(table)


def test_images_the_table_lacks_come_from_the_catalog(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    make_store(folder, varied_records()[:3])
    with LatentStore.open(folder, read_only=True) as reader:
        reader.load_record_table()
        with LatentStore.open(folder) as writer:  # a writer adds an image after the table was read
            added = ImageRecord(path="new.jpg", size=7, mtime_ns=7, content_hash="1" * 64, model_id=MODEL)
            writer.upsert_images([added], np.ones((1, DIM), np.float32))
            (new_id,) = (
                i
                for i, (r, _) in writer.hits(range(1, 10), with_latents=False).items()
                if r.path == "new.jpg"
            )
        hits = reader.hits([1, new_id], with_latents=False)
        assert hits.keys() == {1, new_id} and hits[new_id][0].path == "new.jpg"
        assert new_id not in reader.record_table.records([new_id])  # type: ignore[union-attr]


def test_records_returned_lately_are_not_built_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "store"
    make_store(folder, varied_records())
    built: list[list[int]] = []
    real_records = RecordTable.records

    def counted(self: RecordTable, ids: Sequence[int]) -> dict[int, ImageRecord]:
        built.append(sorted(ids))
        return real_records(self, ids)

    monkeypatch.setattr(RecordTable, "records", counted)
    with LatentStore.open(folder, read_only=True) as store:
        store.load_record_table()
        first = store.hits([1, 2, 3], with_latents=False)
        again = store.hits([3, 2, 4], with_latents=False)
        assert built == [[1, 2, 3], [4]]  # 2 and 3 came from the records returned lately
        assert again[2] == first[2] and again[3] == first[3] and again.keys() == {2, 3, 4}
        assert again[4][0] == real_records(store.record_table, [4])[4]  # type: ignore[arg-type]


def test_a_record_the_columns_cannot_hold_leaves_the_records_in_the_catalog(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    make_store(folder, varied_records()[:3])
    with sqlite3.connect(folder / "catalog.sqlite") as db:
        db.execute("UPDATE images SET content_hash = 'not-a-sha256' WHERE id = 1")
    with LatentStore.open(folder, read_only=True) as store, pytest.raises(StoreError, match="sha256"):
        store.load_record_table()
    live = LiveStore(folder)
    with live.use() as store:
        assert store.record_table is None
        assert store.hits([1], with_latents=False)[1][0].content_hash == "not-a-sha256"
    live.close()


def test_a_live_store_holds_its_records_in_memory_unless_told_not_to(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    make_store(folder, varied_records())
    for wanted in (True, False):
        live = LiveStore(folder, record_table=wanted)
        with live.use() as store:
            assert (store.record_table is not None) == wanted
            assert len(store.hits([1, 2, 3], with_latents=False)) == 3
        live.close()


def test_a_writer_has_no_record_table(tmp_path: Path) -> None:
    make_store(tmp_path / "store", varied_records()[:2])
    with LatentStore.open(tmp_path / "store") as store, pytest.raises(StoreError, match="read-only"):
        store.load_record_table()


def test_rows_out_of_order_or_with_zoned_capture_times_are_refused() -> None:
    def row(image_id: int, capture: datetime | None = None) -> tuple[object, ...]:
        return (image_id, b"a.jpg", 1, 1, None, None, None, None, capture, None, None, None, None)

    assert len(RecordTable.build([[row(1), row(2)], [row(5)]])) == 3
    assert RecordTable.build([]).records([1]) == {}
    with pytest.raises(UnsupportedRecords, match="ascending"):
        RecordTable.build([[row(2)], [row(1)]])
    with pytest.raises(UnsupportedRecords, match="zone"):
        RecordTable.build([[row(1, datetime(2020, 1, 1, tzinfo=UTC))]])


def test_a_new_store_state_takes_the_last_table_at_once_and_reads_a_fresh_one_off_the_query_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "store"
    make_store(folder, varied_records()[:3])
    live = LiveStore(folder, check_interval=0)
    assert live.records is not None
    live.records.min_interval = live.records.factor = 0
    with live.use() as store:
        first = store.record_table
        assert first is not None and len(first) == 3 and live.records.loads == 1

    release, loading = threading.Event(), threading.Event()
    real_load = LatentStore.load_record_table

    def held_load(self: LatentStore) -> RecordTable:
        loading.set()
        assert release.wait(30)
        return real_load(self)

    monkeypatch.setattr(LatentStore, "load_record_table", held_load)
    added: list[int] = []
    for n in range(3):  # three saves while the first fresh table is still being read
        with LatentStore.open(folder) as writer:
            record = ImageRecord(
                path=f"new{n}.jpg", size=n, mtime_ns=n, content_hash=f"{n:064x}", model_id=MODEL
            )
            added += writer.upsert_images([record], np.ones((1, DIM), np.float32))
        assert live.refresh() is True  # the query that notices the save does not wait for the records
        assert loading.wait(30)
        with live.use() as store:
            assert store.record_table is first  # the last table at once, a save behind ...
            hits = store.hits(added, with_latents=False)  # ... and what it lacks from the catalog
            assert [hits[i][0].path for i in added] == [f"new{i}.jpg" for i in range(n + 1)]
    release.set()

    def fresh() -> bool:
        with live.use() as store:
            table = store.record_table
            return table is not first and table is not None and len(table.records(added)) == 3

    deadline = time.monotonic() + 30
    while not fresh() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fresh()
    while live.records._worker is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert live.records.loads == 3  # the start, the held load, then one for the three saves together

    # a save when nothing holds the loads: the fresh table is read for the state swapped in, not the last
    current_at_refresh: list[LatentStore] = []
    real_refresh_soon = live.records.refresh_soon

    def noting_refresh_soon() -> None:
        with live._held() as store:
            assert store is not None
            current_at_refresh.append(store)
        real_refresh_soon()

    monkeypatch.setattr(live.records, "refresh_soon", noting_refresh_soon)
    with LatentStore.open(folder) as writer:
        record = ImageRecord(path="last.jpg", size=9, mtime_ns=9, content_hash=f"{9:064x}", model_id=MODEL)
        [last] = writer.upsert_images([record], np.ones((1, DIM), np.float32))
    assert live.refresh() is True
    while live.records._worker is not None and time.monotonic() < deadline:
        time.sleep(0.02)
    with live.use() as store:
        assert current_at_refresh == [store]
        assert store.record_table is not None and last in store.record_table.records([last])
    live.close()
