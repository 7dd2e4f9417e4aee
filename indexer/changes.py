"""Change detection: sorts the photos under a folder against the store's catalog into what an index run does.

A file whose size and mtime match its row is unchanged and never re-read. A size or mtime change costs
a hash only when the size is the same (otherwise the content changed for sure): the same hash means the
file was only touched, and its row just gets the new stat. A path the catalog lacks is checked against the
ok rows whose file is gone: the same size and hash make it a move (the row and its vector keep their id),
else it is new. A row whose file is gone and was not moved is deleted; one whose file still exists but the
scan did not list (an unreadable folder, say) is kept and reported as skipped, never deleted. A failed row
is retried only when its file's stat changed.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from latentdex.indexer.catalog import CatalogEntry
from latentdex.indexer.decoding import file_sha256, read_failure
from latentdex.indexer.scan import iter_image_files

HashFile = Callable[[Path], str]
_PROGRESS_EVERY = 500


@dataclass(frozen=True)
class ScannedFile:
    """One image file found under the root, as `os.stat` saw it during the scan.

    `error` says why the file itself cannot be read (broken symlink, symlink loop, not a regular file);
    `size` and `mtime_ns` are then the link's own (`lstat`), so an unchanged broken file stays unchanged.
    """

    path: str  # relative to the root, POSIX separators; non-UTF-8 bytes as surrogate escapes
    size: int
    mtime_ns: int
    error: str | None = None


@dataclass(frozen=True)
class EncodeJob:
    """A file to decode and encode; `image_id` is the row it replaces (changed or retried), None if new."""

    file: ScannedFile
    image_id: int | None = None


@dataclass(frozen=True)
class Touch:
    """An ok row whose file has a new mtime but the same content: only its stat is updated."""

    image_id: int
    file: ScannedFile


@dataclass(frozen=True)
class Move:
    """An ok row whose file now lives at another path: the row moves, keeping its id and vector."""

    image_id: int
    old_path: str
    file: ScannedFile


@dataclass(frozen=True)
class Unreadable:
    """A file the scan could not stat; recorded as failed (in row `image_id`, if it has one) now."""

    file: ScannedFile
    image_id: int | None


@dataclass(frozen=True)
class Skipped:
    """A catalog row left as it is, with the reason."""

    path: str
    reason: str


@dataclass
class ChangeSet:
    """What an index run has to do, file by file."""

    encode: list[EncodeJob] = field(default_factory=list)
    touched: list[Touch] = field(default_factory=list)
    moved: list[Move] = field(default_factory=list)
    deleted: list[CatalogEntry] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    still_failed: list[CatalogEntry] = field(default_factory=list)  # failed rows whose file did not change
    skipped: list[Skipped] = field(default_factory=list)
    unchanged: int = 0  # ok rows whose file has the same size and mtime


def scan_folder(
    root: str | os.PathLike[str], on_progress: Callable[[int], None] | None = None
) -> list[ScannedFile]:
    """Every image file under `root` (see `iter_image_files`) with its stat, in scan order.

    A file that vanishes during the scan is left out. Raises NotADirectoryError if `root` is not a folder.
    """
    base = Path(root)
    files = []
    for count, path in enumerate(iter_image_files(base), start=1):
        scanned = _stat_file(path, path.relative_to(base).as_posix())
        if scanned is not None:
            files.append(scanned)
        if on_progress is not None and count % _PROGRESS_EVERY == 0:
            on_progress(count)
    return files


def detect_changes(
    root: str | os.PathLike[str],
    files: Iterable[ScannedFile],
    entries: Iterable[CatalogEntry],
    model_id: str,
    hash_file: HashFile = file_sha256,
) -> ChangeSet:
    """Compare the scanned `files` under `root` with the catalog's `entries` (see the module docstring).

    `model_id` is the store's model: an ok row of another model is re-encoded. `hash_file` is called only
    for files whose size matches a row's; a file it cannot read counts as changed (its worker then records
    why it failed). Deleted candidates are confirmed with `lstat`, so only files really gone are deleted.
    """
    base = Path(root)
    changes = ChangeSet()
    by_path = {entry.path: entry for entry in entries}
    seen: set[str] = set()
    new_files: list[ScannedFile] = []
    for file in files:
        seen.add(file.path)
        entry = by_path.get(file.path)
        same_stat = entry is not None and (entry.size, entry.mtime_ns) == (file.size, file.mtime_ns)
        if file.error is not None:
            if entry is not None and entry.status == "failed" and same_stat:
                changes.still_failed.append(entry)
            else:
                changes.unreadable.append(Unreadable(file, None if entry is None else entry.id))
        elif entry is None:
            new_files.append(file)
        elif entry.status == "failed":
            if same_stat:
                changes.still_failed.append(entry)
            else:
                changes.encode.append(EncodeJob(file, entry.id))
        elif entry.model_id != model_id:
            changes.encode.append(EncodeJob(file, entry.id))
        elif same_stat:
            changes.unchanged += 1
        elif file.size == entry.size and _same_content(hash_file, base / file.path, entry.content_hash):
            changes.touched.append(Touch(entry.id, file))
        else:
            changes.encode.append(EncodeJob(file, entry.id))

    gone = []
    for entry in by_path.values():
        if entry.path in seen:
            continue
        if _is_gone(base / entry.path):
            gone.append(entry)
        else:
            reason = "still on disk but not listed by the scan (unreadable or symlinked folder?): kept as is"
            changes.skipped.append(Skipped(entry.path, reason))

    movable: dict[int, list[CatalogEntry]] = {}
    for entry in gone:
        if entry.status == "ok" and entry.model_id == model_id and entry.content_hash is not None:
            movable.setdefault(entry.size, []).append(entry)
    moved_ids = set()
    for file in new_files:
        candidates = movable.get(file.size)
        digest = _hash_or_none(hash_file, base / file.path) if candidates else None
        match = next((entry for entry in candidates or () if entry.content_hash == digest), None)
        if match is None:
            changes.encode.append(EncodeJob(file))
        else:
            candidates.remove(match)
            moved_ids.add(match.id)
            changes.moved.append(Move(match.id, match.path, file))
    changes.deleted = [entry for entry in gone if entry.id not in moved_ids]
    return changes


def _stat_file(path: Path, relative: str) -> ScannedFile | None:
    try:
        info = os.stat(path)
    except OSError as exc:
        try:
            link = os.lstat(path)
        except OSError:
            return None  # gone since the walk listed it
        return ScannedFile(relative, link.st_size, link.st_mtime_ns, error=read_failure(exc))
    error = None if stat.S_ISREG(info.st_mode) else "not a regular file"
    return ScannedFile(relative, info.st_size, info.st_mtime_ns, error=error)


def _same_content(hash_file: HashFile, path: Path, expected: str | None) -> bool:
    return expected is not None and _hash_or_none(hash_file, path) == expected


def _hash_or_none(hash_file: HashFile, path: Path) -> str | None:
    try:
        return hash_file(path)
    except OSError:
        return None


def _is_gone(path: Path) -> bool:
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False  # there, but not for us to see (a folder we may not enter): not proof of deletion
    return False
