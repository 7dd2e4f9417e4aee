"""Change detection: the scan's view of a folder, and how each file compares with the catalog."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from latentdex.indexer.catalog import REENCODE_SIZE, CatalogEntry
from latentdex.indexer.changes import EncodeJob, ScannedFile, detect_changes, scan_folder
from latentdex.indexer.decoding import file_sha256

MODEL = "vae-test"


def entry(image_id: int, path: str, size: int = 10, mtime_ns: int = 1, **fields: object) -> CatalogEntry:
    values: dict[str, object] = {"content_hash": f"hash-{image_id}", "status": "ok", "model_id": MODEL}
    values["failure_reason"] = None
    values.update(fields)
    return CatalogEntry(image_id, path, size, mtime_ns, **values)  # type: ignore[arg-type]


class Hashes:
    """A hash function over a fixed table that records which files it was asked about."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table, self.asked = table, []

    def __call__(self, path: Path) -> str:
        self.asked.append(path.name)
        if path.name not in self.table:
            raise PermissionError(13, "Permission denied")
        return self.table[path.name]


def test_scan_gives_relative_posix_paths_with_stat_and_reasons(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.png").write_bytes(b"12345")
    (tmp_path / ".hidden.png").write_bytes(b"1")
    (tmp_path / "notes.txt").write_bytes(b"1")
    raw_name = os.fsencode(tmp_path) + b"/caf\xe9.jpg"
    with open(raw_name, "wb") as handle:
        handle.write(b"123")
    (tmp_path / "broken.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    os.mkfifo(tmp_path / "pipe.png")
    found = {file.path: file for file in scan_folder(tmp_path)}
    name = os.fsdecode(b"caf\xe9.jpg")
    assert sorted(found) == sorted(["a/b/x.png", "broken.jpg", "loop.jpg", "pipe.png", name])
    assert found["a/b/x.png"].size == 5 and found["a/b/x.png"].error is None
    assert found[name].size == 3 and found[name].path.encode("utf-8", "surrogateescape") == b"caf\xe9.jpg"
    assert found["broken.jpg"].error == "file not found (deleted, or a broken symlink)"
    assert found["loop.jpg"].error == "symlink loop"
    assert found["pipe.png"].error == "not a regular file"


def test_unchanged_files_are_never_hashed(tmp_path: Path) -> None:
    files = [ScannedFile("a.png", 10, 1), ScannedFile("b.png", 10, 1)]
    hashes = Hashes({})
    changes = detect_changes(tmp_path, files, [entry(1, "a.png"), entry(2, "b.png")], MODEL, hashes)
    assert changes.unchanged == 2 and not changes.encode and not changes.touched
    assert hashes.asked == []


def test_a_stat_change_is_touched_or_changed_by_content(tmp_path: Path) -> None:
    files = [
        ScannedFile("touched.png", 10, 2),  # same size, new mtime, same hash
        ScannedFile("edited.png", 10, 2),  # same size, new mtime, new hash
        ScannedFile("grown.png", 11, 1),  # another size: changed without hashing
        ScannedFile("unreadable.png", 10, 2),  # cannot hash: re-encoded, its worker reports why
    ]
    rows = [entry(i, file.path) for i, file in enumerate(files, start=1)]
    hashes = Hashes({"touched.png": "hash-1", "edited.png": "other"})
    changes = detect_changes(tmp_path, files, rows, MODEL, hashes)
    assert [(t.image_id, t.file.mtime_ns) for t in changes.touched] == [(1, 2)]
    assert changes.encode == [EncodeJob(files[1], 2), EncodeJob(files[2], 3), EncodeJob(files[3], 4)]
    assert sorted(hashes.asked) == ["edited.png", "touched.png", "unreadable.png"]
    assert changes.unchanged == 0 and not changes.deleted


def test_a_renamed_file_is_a_move_and_a_gone_one_is_deleted(tmp_path: Path) -> None:
    files = [ScannedFile("new/place.png", 10, 5), ScannedFile("copy.png", 10, 5)]
    files.append(ScannedFile("big.png", 99, 5))
    rows = [entry(1, "old.png"), entry(2, "deleted.png", size=99)]
    hashes = Hashes({"place.png": "hash-1", "copy.png": "hash-1", "big.png": "unrelated"})
    changes = detect_changes(tmp_path, files, rows, MODEL, hashes)
    assert [(m.image_id, m.old_path, m.file.path) for m in changes.moved] == [(1, "old.png", "new/place.png")]
    assert changes.encode == [EncodeJob(files[1]), EncodeJob(files[2])]  # the second copy is new
    assert [e.id for e in changes.deleted] == [2]
    assert "copy.png" not in hashes.asked  # its only candidate was taken: no size match left


def test_only_new_files_of_a_gone_rows_size_are_hashed(tmp_path: Path) -> None:
    files = [ScannedFile("other-size.png", 11, 1), ScannedFile("same-size.png", 10, 1)]
    hashes = Hashes({"same-size.png": "not it"})
    changes = detect_changes(tmp_path, files, [entry(1, "gone.png")], MODEL, hashes)
    assert hashes.asked == ["same-size.png"]
    assert not changes.moved and [e.id for e in changes.deleted] == [1] and len(changes.encode) == 2


def test_failed_rows_are_retried_only_when_their_stat_changed(tmp_path: Path) -> None:
    files = [ScannedFile("same.jpg", 10, 1), ScannedFile("fixed.jpg", 12, 3)]
    rows = [
        entry(1, "same.jpg", status="failed", failure_reason="corrupt", content_hash=None),
        entry(2, "fixed.jpg", status="failed", failure_reason="corrupt", content_hash=None),
    ]
    changes = detect_changes(tmp_path, files, rows, MODEL, Hashes({}))
    assert [e.id for e in changes.still_failed] == [1]
    assert changes.encode == [EncodeJob(files[1], 2)]


def test_rows_awaiting_reencoding_and_rows_of_another_model_are_encoded(tmp_path: Path) -> None:
    files = [ScannedFile("reset.png", 10, 1), ScannedFile("foreign.png", 10, 1)]
    rows = [
        entry(1, "reset.png", size=REENCODE_SIZE, status="failed", failure_reason="awaiting", model_id=None),
        entry(2, "foreign.png", model_id="vae-other"),
    ]
    changes = detect_changes(tmp_path, files, rows, MODEL, Hashes({}))
    assert changes.encode == [EncodeJob(files[0], 1), EncodeJob(files[1], 2)]


def test_unreadable_files_are_recorded_once_and_then_stay_failed(tmp_path: Path) -> None:
    broken = ScannedFile("broken.jpg", 30, 7, error="file not found (deleted, or a broken symlink)")
    first = detect_changes(tmp_path, [broken], [], MODEL, Hashes({}))
    assert [(u.file.path, u.image_id) for u in first.unreadable] == [("broken.jpg", None)]
    row = entry(4, "broken.jpg", size=30, mtime_ns=7, status="failed", failure_reason=broken.error)
    again = detect_changes(tmp_path, [broken], [row], MODEL, Hashes({}))
    assert [e.id for e in again.still_failed] == [4] and not again.unreadable
    ok_row = entry(5, "broken.jpg", size=30, mtime_ns=1)
    now_broken = detect_changes(tmp_path, [broken], [ok_row], MODEL, Hashes({}))
    assert [(u.file.path, u.image_id) for u in now_broken.unreadable] == [("broken.jpg", 5)]


def test_a_row_whose_file_exists_but_was_not_scanned_is_kept(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "x.png").write_bytes(b"1")
    (tmp_path / "linked").symlink_to(tmp_path / "real", target_is_directory=True)  # the scan skips it
    files = scan_folder(tmp_path)
    assert [f.path for f in files] == ["real/x.png"]
    rows = [entry(1, "real/x.png", size=1, mtime_ns=files[0].mtime_ns), entry(2, "linked/x.png", size=1)]
    changes = detect_changes(tmp_path, files, rows, MODEL, Hashes({}))
    assert not changes.deleted and changes.unchanged == 1
    assert [s.path for s in changes.skipped] == ["linked/x.png"]


def test_file_sha256_streams_the_bytes(tmp_path: Path) -> None:
    import hashlib

    data = os.urandom(3 << 20 | 5)  # spans several chunks
    (tmp_path / "x.bin").write_bytes(data)
    assert file_sha256(tmp_path / "x.bin") == hashlib.sha256(data).hexdigest()
    with pytest.raises(OSError):
        file_sha256(tmp_path / "missing.bin")
