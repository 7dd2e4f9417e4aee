"""Export and import: real Parquet that other tools read, .npz, round trips, and refused formats."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from latentdex.errors import StoreError
from latentdex.indexer.export import export_store, import_store
from latentdex.indexer.perceptual_hash import HASHES
from latentdex.indexer.pixel_alignment import THUMBNAIL_BYTES
from latentdex.indexer.store import ImageRecord, LatentStore
from latentdex.service.cli import app

DIM = 16
MODEL = "vae-test"
ODD_PATH = b"albums/caf\xe9 \xff/1.jpg".decode("utf-8", "surrogateescape")  # not valid UTF-8 on disk
runner = CliRunner()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    folder = tmp_path / "store"
    records = [
        ImageRecord(
            path=f"album/{i:03d}.jpg",
            size=1000 + i,
            mtime_ns=10**18 + i,
            content_hash=f"{i:064x}",
            width=640 if i % 2 else None,
            height=480 if i % 2 else None,
            format="JPEG",
            capture_time=datetime(2021, 6, 1 + i % 28, 12, 30) if i % 3 else None,
            camera_make="Acme" if i % 4 == 0 else None,
            camera_model=None,
            model_id=MODEL,
        )
        for i in range(40)
    ]
    records.append(ImageRecord(path=ODD_PATH, size=5, mtime_ns=1, content_hash="ab" * 32, model_id=MODEL))
    rng = np.random.default_rng(0)
    latents = rng.standard_normal((len(records), DIM)).astype(np.float32)
    # perceptual hashes for two images in three (the top bit set in some), none for the rest
    hashes = [rng.integers(0, 2**64, HASHES, dtype=np.uint64) if i % 3 else None for i in range(len(records))]
    # alignment thumbnails for all but every fourth image
    thumbnails = [
        rng.integers(0, 256, THUMBNAIL_BYTES, dtype=np.uint8).tobytes() if i % 4 else None
        for i in range(len(records))
    ]
    with LatentStore.create(folder, model_id=MODEL, latent_dim=DIM) as created:
        created.upsert_images(records, latents, hashes, thumbnails)
        created.mark_failed(
            [ImageRecord(path="bad.jpg", size=1, mtime_ns=1, content_hash=None, failure_reason="broken")]
        )
    return folder


def contents(folder: Path) -> dict[str, tuple]:
    """path -> (metadata..., latent bytes) of every ok image: what a round trip must keep."""
    with LatentStore.open(folder, read_only=True) as opened:
        ids = [e.id for e in opened.entries() if e.status == "ok"]
        records = opened.get(ids)
        latents = opened.latents(ids)
        hashes, known = opened.perceptual_hashes(np.array(ids))
        thumbnails = opened.alignment_thumbnails(ids)
    return {
        r.path: (
            r.size,
            r.mtime_ns,
            r.content_hash,
            r.width,
            r.height,
            r.format,
            r.capture_time,
            r.camera_make,
            r.camera_model,
            tuple(row.tolist()) if has else None,
            thumbnails[r.id].tobytes() if r.id in thumbnails else None,
            latent.tobytes(),
        )
        for r, latent, row, has in zip(records, latents, hashes, known, strict=True)
    }


def test_parquet_has_one_row_per_image_the_metadata_as_columns_and_a_fixed_size_latent(
    store: Path, tmp_path: Path
) -> None:
    out = tmp_path / "lib.parquet"
    result = runner.invoke(app, ["export", str(store), "--out", str(out)])
    assert result.exit_code == 0 and "exported 41 images" in result.output, result.output
    table = pq.read_table(out)
    assert table.num_rows == 41
    latent_type = table.schema.field("latent").type
    assert pa.types.is_fixed_size_list(latent_type) and latent_type.list_size == DIM
    assert latent_type.value_type == pa.float32()
    assert table.schema.metadata[b"model_id"] == MODEL.encode()
    assert table.schema.metadata[b"latent_dim"] == str(DIM).encode()
    assert {"id", "path", "display_path", "size", "mtime_ns", "content_hash", "width", "capture_time"} <= set(
        table.column_names
    )
    rows = table.to_pydict()
    odd = rows["path"].index(ODD_PATH.encode("utf-8", "surrogateescape"))
    assert rows["width"][odd] is None and rows["camera_make"][odd] is None
    latents = np.stack([np.asarray(v, np.float32) for v in rows["latent"]])
    assert latents.shape == (41, DIM) and latents.dtype == np.float32
    expected = contents(store)
    for path, latent in zip(rows["path"], latents, strict=True):
        assert latent.tobytes() == expected[path.decode("utf-8", "surrogateescape")][-1]


@pytest.mark.parametrize("suffix", [".parquet", ".npz"])
def test_export_then_import_keeps_every_path_field_and_latent(
    store: Path, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"lib{suffix}"
    with LatentStore.open(store, read_only=True) as opened:
        assert export_store(opened, out) == 41
    assert import_store(out, tmp_path / "copy") == 41
    copied = contents(tmp_path / "copy")
    assert copied == contents(store)
    assert sum(fields[-3] is not None for fields in copied.values()) == 27  # hashes came along
    assert sum(fields[-2] is not None for fields in copied.values()) == 30  # and thumbnails
    with LatentStore.open(tmp_path / "copy", read_only=True) as copy:
        assert copy.model_id == MODEL and copy.verify().ok
        assert copy.get_by_path(ODD_PATH).size == 5


def test_import_ends_with_the_index_auto_would_pick(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("latentdex.indexer.vectors.AUTO_FLAT_BELOW", 20)  # 41 images call for HNSW
    out = tmp_path / "lib.parquet"
    with LatentStore.open(store, read_only=True) as opened:
        export_store(opened, out)
    import_store(out, tmp_path / "auto", index_type="auto")
    import_store(out, tmp_path / "flat", index_type="flat")
    with LatentStore.open(tmp_path / "auto", read_only=True) as auto:
        assert (auto.index_type, auto.vector_kind) == ("auto", "hnsw") and auto.verify().ok
    with LatentStore.open(tmp_path / "flat", read_only=True) as flat:
        assert (flat.index_type, flat.vector_kind) == ("flat", "flat")


def test_the_format_follows_the_suffix_or_the_option(store: Path, tmp_path: Path) -> None:
    forced = tmp_path / "lib.data"
    result = runner.invoke(app, ["export", str(store), "--out", str(forced), "--format", "parquet"])
    assert result.exit_code == 0, result.output
    assert forced.read_bytes()[:4] == b"PAR1"
    npz = tmp_path / "lib.npz"
    assert runner.invoke(app, ["export", str(store), "--out", str(npz)]).exit_code == 0
    assert npz.read_bytes()[:2] == b"PK"
    copied = runner.invoke(app, ["import", str(forced), "--store", str(tmp_path / "copy")])
    assert copied.exit_code == 0 and "imported 41 images" in copied.output, copied.output


@pytest.mark.parametrize("name", ["lib.csv", "lib", "lib.parquet.tmp"])
def test_an_unknown_export_format_exits_2_and_writes_nothing(store: Path, tmp_path: Path, name: str) -> None:
    result = runner.invoke(app, ["export", str(store), "--out", str(tmp_path / name)])
    message = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and ".parquet or .npz" in message, message
    assert not (tmp_path / name).exists()
    bad = runner.invoke(app, ["export", str(store), "--out", str(tmp_path / "x.parquet"), "--format", "csv"])
    assert bad.exit_code == 2


def test_importing_a_file_that_is_not_an_export_is_a_store_error(tmp_path: Path) -> None:
    table_file = tmp_path / "other.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), table_file)
    with pytest.raises(StoreError, match="not a latentdex export"):
        import_store(table_file, tmp_path / "s")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(StoreError, match=r"not a readable \.npz export"):
        import_store(tmp_path / "junk.npz", tmp_path / "t")


def test_an_export_from_before_thumbnails_imports_without_them(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "lib.parquet"
    with LatentStore.open(store, read_only=True) as opened:
        export_store(opened, out)
        thumbnailed = opened.thumbnailed_count()
    assert 0 < thumbnailed < 41
    table = pq.read_table(out)
    assert table.column("alignment_thumbnail").null_count == 41 - thumbnailed
    old = tmp_path / "old.parquet"
    pq.write_table(table.drop_columns(["alignment_thumbnail"]), old)
    assert import_store(old, tmp_path / "copy") == 41
    with LatentStore.open(tmp_path / "copy", read_only=True) as copy:
        assert copy.thumbnailed_count() == 0 and copy.hashed_count() > 0 and copy.verify().ok


def test_an_export_from_before_hashes_imports_without_them(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "lib.parquet"
    with LatentStore.open(store, read_only=True) as opened:
        export_store(opened, out)
    table = pq.read_table(out)
    old = tmp_path / "old.parquet"  # the same file as the builds before hashes wrote it
    pq.write_table(table.drop_columns(["perceptual_hashes"]), old)
    assert import_store(old, tmp_path / "copy") == 41
    with LatentStore.open(tmp_path / "copy", read_only=True) as copy:
        assert copy.hashed_count() == 0 and copy.verify().ok
