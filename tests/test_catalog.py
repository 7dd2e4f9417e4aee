"""The SQL catalog: pragmas, how transactions begin, ids that are never reused, byte-exact paths."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event, select, text

from latentdex.indexer.catalog import Catalog, ImageRecord, ImageRow, path_key, to_record, write_images


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    catalog = Catalog.create(tmp_path / "catalog.sqlite", {"model_id": "m"})
    yield catalog
    catalog.close()


def record(path: str) -> ImageRecord:
    return ImageRecord(path=path, size=1, mtime_ns=2, content_hash="ab" * 32, model_id="m")


def test_connections_use_wal_normal_sync_foreign_keys_and_a_busy_timeout(catalog: Catalog) -> None:
    with catalog.reading() as session:
        pragmas = {name: session.scalar(text(f"PRAGMA {name}")) for name in ("journal_mode", "synchronous")}
        pragmas |= {name: session.scalar(text(f"PRAGMA {name}")) for name in ("foreign_keys", "busy_timeout")}
    assert pragmas == {"journal_mode": "wal", "synchronous": 1, "foreign_keys": 1, "busy_timeout": 30_000}


def test_writes_begin_immediate_and_reads_deferred(catalog: Catalog) -> None:
    statements: list[str] = []
    event.listen(catalog.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    with catalog.writing() as session:
        session.execute(select(ImageRow.id))
    with catalog.reading() as session:
        session.execute(select(ImageRow.id))
    begins = [s for s in statements if s.startswith("BEGIN")]
    assert begins == ["BEGIN IMMEDIATE", "BEGIN DEFERRED"]


def test_ids_of_deleted_rows_are_never_handed_out_again(catalog: Catalog) -> None:
    with catalog.writing() as session:
        first = write_images(
            session, [record("a.jpg"), record("b.jpg")], [b"x" * 4] * 2, failed=False, generation=1
        )
    with catalog.writing() as session:
        session.delete(session.get(ImageRow, first[1]))
    with catalog.writing() as session:
        (again,) = write_images(session, [record("c.jpg")], [b"x" * 4], failed=False, generation=2)
    assert again > max(first)


def test_any_bytes_name_round_trips(catalog: Catalog) -> None:
    name = b"dir/caf\xe9 \xff\xfe.jpg".decode("utf-8", "surrogateescape")
    with catalog.writing() as session:
        (image_id,) = write_images(session, [record(name)], [b"x" * 4], failed=False, generation=1)
    with catalog.reading() as session:
        row = session.get(ImageRow, image_id)
        assert row.path_bytes == b"dir/caf\xe9 \xff\xfe.jpg"
        assert row.path == "dir/caf\\xe9 \\xff\\xfe.jpg"
        assert to_record(row).path == name
    with pytest.raises(ValueError, match="relative"):
        path_key("/abs/photo.jpg")
