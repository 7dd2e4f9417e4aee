"""The index run end to end: real files, worker processes, SQLite and FAISS, with a tiny random model."""

from __future__ import annotations

import hashlib
import os
import signal
import struct
import zlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import shape_image
from crashing_decoder import decode_or_crash
from indexing_support import save_tiny_model, write_photos
from PIL import Image

from latentdex.errors import ModelMismatch, NotFound, StoreError
from latentdex.indexer.catalog import RunCounts
from latentdex.indexer.decoding import WORKER_DIED
from latentdex.indexer.load import load_for_model
from latentdex.indexer.pipeline import IndexOptions, IndexProgress, IndexReport, index_folder
from latentdex.indexer.store import LatentStore
from latentdex.models.inference import LatentCodec

OPTIONS = IndexOptions(workers=1, batch_size=4, flush_every=2)


@pytest.fixture(scope="module")
def codec(tmp_path_factory: pytest.TempPathFactory) -> LatentCodec:
    return LatentCodec.load(save_tiny_model(tmp_path_factory.mktemp("model")))


@pytest.fixture
def encoded(codec: LatentCodec, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of every batch the codec encodes during the test."""
    sizes: list[int] = []
    original = codec.encode

    def counting(images: np.ndarray) -> np.ndarray:
        sizes.append(len(images))
        return original(images)

    monkeypatch.setattr(codec, "encode", counting)
    return sizes


def run(photos: Path, store: Path, codec: LatentCodec, **options: object) -> IndexReport:
    return index_folder(photos, store, codec, replace(OPTIONS, **options))  # type: ignore[arg-type]


def run_crashing(photos: Path, store: Path, codec: LatentCodec, **options: object) -> IndexReport:
    """`run` with workers whose decoder dies on files named "crash*"."""
    options = replace(OPTIONS, **options)  # type: ignore[arg-type]
    return index_folder(photos, store, codec, options, decode=decode_or_crash)


def ids_by_path(store: Path) -> dict[str, int]:
    with LatentStore.open(store, read_only=True) as opened:
        return {entry.path: entry.id for entry in opened.entries()}


def test_first_run_indexes_everything_and_the_second_reencodes_nothing(
    tmp_path: Path, codec: LatentCodec, encoded: list[int]
) -> None:
    photos = write_photos(tmp_path / "photos", 10)
    store = tmp_path / "store"
    first = run(tmp_path / "photos", store, codec)
    assert first.counts == RunCounts(new=10) and not first.interrupted and not first.failures
    assert sum(encoded) == 10 and max(encoded) <= OPTIONS.batch_size
    with LatentStore.open(store, read_only=True) as opened:
        ids = [entry.id for entry in opened.entries()]
        before = opened.latents(ids)
        record = opened.get_by_path("photo003.png")
        assert (record.width, record.height, record.format) == (40, 40, "PNG")
        assert record.model_id == codec.model_id
        assert record.content_hash == hashlib.sha256(photos[3].read_bytes()).hexdigest()
        assert record.size == photos[3].stat().st_size and record.mtime_ns == photos[3].stat().st_mtime_ns
        expected = codec.encode(load_for_model(photos[3], codec.image_size)[None])
        assert np.allclose(opened.latents([record.id]), expected, atol=1e-6)
        for image_id, latent in zip(ids, before, strict=True):  # a query by an image's latent finds it first
            assert opened.search(latent[None], 3)[0][0].id == image_id
        assert opened.verify().ok
    encoded.clear()
    second = run(tmp_path / "photos", store, codec)
    assert second.counts == RunCounts(unchanged=10) and encoded == []
    with LatentStore.open(store, read_only=True) as opened:
        assert [entry.id for entry in opened.entries()] == ids
        assert opened.latents(ids).tobytes() == before.tobytes()
        assert [(r.status, r.counts.new, r.counts.unchanged) for r in opened.runs()] == [
            ("complete", 10, 0),
            ("complete", 0, 10),
        ]


def test_changed_touched_moved_and_deleted_files(
    tmp_path: Path, codec: LatentCodec, encoded: list[int]
) -> None:
    folder, store = tmp_path / "photos", tmp_path / "store"
    photos = write_photos(folder, 8)
    run(folder, store, codec)
    ids = ids_by_path(store)
    with LatentStore.open(store, read_only=True) as opened:
        latents = dict(zip(ids.values(), opened.latents(list(ids.values())), strict=True))
    shape_image(90, 3).save(photos[0])  # new content
    stat = photos[1].stat()
    os.utime(photos[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched, same bytes
    (folder / "album").mkdir()
    photos[2].rename(folder / "album" / "renamed.png")
    photos[3].unlink()
    encoded.clear()
    report = run(folder, store, codec)
    assert report.counts == RunCounts(changed=1, unchanged=5, moved=1, deleted=1)
    assert sum(encoded) == 1  # only the changed file was encoded
    after = ids_by_path(store)
    assert after["photo000.png"] == ids["photo000.png"]
    assert after["album/renamed.png"] == ids["photo002.png"] and "photo002.png" not in after
    assert "photo003.png" not in after
    gone = ids["photo003.png"]
    with LatentStore.open(store, read_only=True) as opened:
        assert opened.get_by_path("photo001.png").mtime_ns == photos[1].stat().st_mtime_ns
        moved = after["album/renamed.png"]
        assert opened.latents([moved]).tobytes() == latents[moved].tobytes()
        assert not np.allclose(opened.latents([ids["photo000.png"]]), latents[ids["photo000.png"]])
        hits = opened.search(np.stack(list(latents.values())), k=10)
        assert gone not in {match.id for row in hits for match in row}
        with pytest.raises(NotFound):
            opened.get([gone])
        assert opened.count() == 7 and opened.verify().ok


def write_bad_inputs(folder: Path) -> dict[str, str]:
    """Every kind of bad input, by name, with a part of the reason it must be recorded with."""
    folder.mkdir(parents=True, exist_ok=True)
    shape_image(1, 1).save(folder / "corrupt.png")
    data = bytearray((folder / "corrupt.png").read_bytes())
    start = data.index(b"IDAT") + 10
    data[start : start + 30] = bytes(30)  # zeroes in the compressed pixels
    (folder / "corrupt.png").write_bytes(data)
    shape_image(1, 1).save(folder / "truncated.jpg", "JPEG")
    data = bytearray((folder / "truncated.jpg").read_bytes())
    (folder / "truncated.jpg").write_bytes(data[: len(data) * 2 // 3])
    (folder / "empty.png").write_bytes(b"")
    (folder / "text.jpg").write_text("not an image at all")
    (folder / "huge.png").write_bytes(_png_header_only(12_000, 12_000))
    (folder / "broken.jpg").symlink_to(folder / "nowhere.jpg")
    (folder / "loop.jpg").symlink_to(folder / "loop.jpg")
    os.mkfifo(folder / "pipe.png")
    shape_image(2, 2).save(folder / "crash-me.png")
    return {
        "corrupt.png": "corrupt or truncated",
        "truncated.jpg": "truncated",
        "empty.png": "empty file",
        "text.jpg": "not a supported image format",
        "huge.png": "too large",
        "broken.jpg": "broken symlink",
        "loop.jpg": "symlink loop",
        "pipe.png": "not a regular file",
        "crash-me.png": WORKER_DIED,
    }


def test_bad_inputs_fail_with_a_reason_and_the_run_goes_on(tmp_path: Path, codec: LatentCodec) -> None:
    folder, store = tmp_path / "photos", tmp_path / "store"
    write_photos(folder, 3)
    odd_names = [os.fsdecode(b"caf\xe9.png"), "e\u0301t\u00e9 \u2603 \U0001f4f7.png", "new\nline.png"]
    for index, name in enumerate(odd_names):
        shape_image(10 + index, 0).save(os.path.join(folder, name))
    bad = write_bad_inputs(folder)
    # Two workers, so files are in flight beside the one whose worker dies: they must still be indexed.
    report = run_crashing(folder, store, codec, workers=2, batch_size=2)
    assert report.counts == RunCounts(new=6, failed=len(bad))
    reasons = dict(report.failures)
    assert sorted(reasons) == sorted(bad)
    for name, reason in bad.items():
        assert reason in reasons[name], (name, reasons[name])
    with LatentStore.open(store, read_only=True) as opened:
        for name in odd_names:
            assert opened.get_by_path(name).status == "ok"
        for name, reason in bad.items():
            record = opened.get_by_path(name)
            assert record.status == "failed" and reason in (record.failure_reason or "")
        assert opened.count() == 6 and opened.count("failed") == len(bad) and opened.verify().ok


def test_failed_files_stay_failed_until_they_change(tmp_path: Path, codec: LatentCodec) -> None:
    folder, store = tmp_path / "photos", tmp_path / "store"
    write_photos(folder, 2)
    (folder / "text.jpg").write_text("not an image")
    (folder / "broken.jpg").symlink_to(folder / "nowhere.jpg")
    run(folder, store, codec)
    stages: list[str] = []

    def record(progress: IndexProgress) -> None:
        stages.append(progress.stage)

    again = index_folder(folder, store, codec, OPTIONS, on_progress=record)
    assert again.counts == RunCounts(unchanged=2, failed=2) and len(again.failures) == 2
    assert "indexing" not in stages  # nothing was decoded again
    shape_image(5, 5).save(folder / "text.jpg", "JPEG")
    fixed = run(folder, store, codec)
    assert fixed.counts == RunCounts(changed=1, unchanged=2, failed=1)
    with LatentStore.open(store, read_only=True) as opened:
        assert opened.get_by_path("text.jpg").status == "ok" and opened.count() == 3


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_a_file_without_read_permission_fails(tmp_path: Path, codec: LatentCodec) -> None:
    folder = tmp_path / "photos"
    write_photos(folder, 2)
    (folder / "photo001.png").chmod(0)
    report = run(folder, tmp_path / "store", codec)
    assert report.counts == RunCounts(new=1, failed=1)
    assert report.failures == [("photo001.png", "permission denied")]


def test_another_models_store_is_refused_then_reencoded(tmp_path: Path, codec: LatentCodec) -> None:
    folder, store = tmp_path / "photos", tmp_path / "store"
    photos = write_photos(folder, 5)
    run(folder, store, codec)
    ids = ids_by_path(store)
    other = LatentCodec.load(save_tiny_model(tmp_path / "other", seed=1, latent_dim=6))
    with pytest.raises(ModelMismatch, match=f"{codec.model_id}.*{other.model_id}"):
        run(folder, store, other)
    with LatentStore.open(store, read_only=True) as opened:
        assert opened.model_id == codec.model_id and opened.count() == 5 and len(opened.runs()) == 1
    report = run(folder, store, other, reencode=True)
    assert report.counts == RunCounts(changed=5)
    assert ids_by_path(store) == ids
    with LatentStore.open(store, read_only=True) as opened:
        assert (opened.model_id, opened.latent_dim) == (other.model_id, 6)
        assert opened.info.model_id == other.model_id
        pixels = np.stack([load_for_model(path, other.image_size) for path in photos])
        stored = opened.latents([ids[path.name] for path in photos])
        assert np.allclose(stored, other.encode(pixels), atol=1e-6) and opened.verify().ok
    assert run(folder, store, other).counts == RunCounts(unchanged=5)


def test_reset_model_then_a_plain_run_finishes_the_reencoding(tmp_path: Path, codec: LatentCodec) -> None:
    folder, store = tmp_path / "photos", tmp_path / "store"
    write_photos(folder, 4)
    run(folder, store, codec)
    with LatentStore.open(store) as opened:  # as if a --reencode run were killed right after the reset
        assert opened.reset_model("vae-next", 8) == 4
        assert opened.count() == 0 and opened.count("failed") == 4
        assert "awaiting re-encoding" in (opened.get_by_path("photo000.png").failure_reason or "")
        assert opened.search(np.ones((1, 8), np.float32), 4) == [[]]
        opened.reset_model(codec.model_id, 8)
    report = run(folder, store, codec)
    assert report.counts == RunCounts(changed=4)
    with LatentStore.open(store, read_only=True) as opened:
        assert opened.count() == 4 and opened.verify().ok


def _ctrl_c_at(*counts: int) -> Callable[[IndexProgress], None]:
    """A progress callback that sends this process SIGINT when `counts` files have been decoded."""

    def on_progress(progress: IndexProgress) -> None:
        if progress.stage == "indexing" and progress.done in counts:
            os.kill(os.getpid(), signal.SIGINT)

    return on_progress


def test_ctrl_c_finishes_the_batch_saves_and_the_next_run_completes(
    tmp_path: Path, codec: LatentCodec
) -> None:
    folder, store = tmp_path / "photos", tmp_path / "store"
    write_photos(folder, 16)
    report = index_folder(folder, store, codec, OPTIONS, on_progress=_ctrl_c_at(3))
    assert report.interrupted
    written = report.counts.new
    assert 3 <= written < 16
    with LatentStore.open(store, read_only=True) as opened:  # saved: consistent without any repair
        assert opened.count() == written and opened.verify().ok
        assert opened.runs()[-1].status == "interrupted"
    rest = run(folder, store, codec)
    assert rest.counts == RunCounts(new=16 - written, unchanged=written)
    assert len(ids_by_path(store)) == 16


def test_a_second_ctrl_c_stops_at_once_and_the_run_is_marked(tmp_path: Path, codec: LatentCodec) -> None:
    folder, store = tmp_path / "photos", tmp_path / "store"
    write_photos(folder, 8)
    with pytest.raises(KeyboardInterrupt):
        index_folder(folder, store, codec, OPTIONS, on_progress=_ctrl_c_at(2, 3))
    with LatentStore.open(store) as opened:
        assert opened.runs()[-1].status == "interrupted" and opened.verify().ok
    assert run(folder, store, codec).counts.failed == 0
    assert len(ids_by_path(store)) == 8


def test_errors_before_any_work(tmp_path: Path, codec: LatentCodec) -> None:
    with pytest.raises(NotFound, match="photos folder"):
        run(tmp_path / "missing", tmp_path / "store", codec)
    assert not (tmp_path / "store").exists()
    write_photos(tmp_path / "photos", 1)
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(StoreError, match="cannot write to the store folder"):
        run(tmp_path / "photos", tmp_path / "a-file" / "store", codec)
    run(tmp_path / "photos", tmp_path / "store", codec)
    with pytest.raises(StoreError, match=r"whitened metric.*latentdex rebuild"):
        run(tmp_path / "photos", tmp_path / "store", codec, metric="l2")
    with pytest.raises(ValueError, match="unknown index type"):
        run(tmp_path / "photos", tmp_path / "store", codec, index_type="annoy")
    with LatentStore.open(tmp_path / "store", read_only=True) as opened:
        assert len(opened.runs()) == 1


def test_asking_for_another_index_type_rebuilds_the_vectors(tmp_path: Path, codec: LatentCodec) -> None:
    folder, store = tmp_path / "photos", tmp_path / "store"
    write_photos(folder, 6)
    run(folder, store, codec, metric="l2")
    report = run(folder, store, codec, index_type="hnsw")
    assert "rebuilt the vectors as hnsw" in report.notes
    with LatentStore.open(store, read_only=True) as opened:
        assert (opened.vector_kind, opened.index_type, opened.metric) == ("hnsw", "hnsw", "l2")
        ids = [entry.id for entry in opened.entries()]
        assert [row[0].id for row in opened.search(opened.latents(ids), 1)] == ids


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` pixels and holds none: the size is read before decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_the_png_helper_declares_its_size() -> None:
    from io import BytesIO

    with Image.open(BytesIO(_png_header_only(30, 20))) as image:
        assert image.size == (30, 20)
