"""A read-only store that follows the indexer: reopened when its manifest changes, never under a query.

The indexer saves the vectors file and then rewrites `manifest.json` (both atomically, by rename), so a
new manifest means a new store state. `LiveStore.use()` hands out the current `LatentStore`; at most every
`check_interval` seconds it compares the manifest's stat with the one it opened, and if it changed, opens
the store again and swaps it in. Queries already running keep the store they started with, which is
closed when the last of them is done.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from latentdex.errors import NoStore, StoreError
from latentdex.indexer.store import MANIFEST_FILE, LatentStore
from latentdex.service.record_reloads import RecordReloads

log = logging.getLogger(__name__)


@dataclass
class _Opened:
    store: LatentStore
    stamp: tuple[int, int, int]  # the manifest's (inode, size, mtime_ns) when it was opened
    users: int = 0
    retired: bool = False


class LiveStore:
    """The current read-only view of the store at `folder`; thread-safe."""

    def __init__(
        self, folder: str | os.PathLike[str], check_interval: float = 1.0, record_table: bool = True
    ) -> None:
        self.folder = Path(folder)
        self.check_interval = check_interval
        # each store state's records in memory, loaded off the query path (see RecordReloads)
        self.records = RecordReloads(self._held) if record_table else None
        self.reloads = 0  # how many times a changed store was swapped in
        self._lock = threading.Lock()
        # One reopen at a time: two could finish out of order and swap an older state back in.
        self._reopening = threading.Lock()
        self._current: _Opened | None = None
        self._checked_at = float("-inf")
        self._last_error: str | None = None
        self.refresh(force=True)

    @contextmanager
    def use(self) -> Iterator[LatentStore]:
        """The current store, held open until the block ends; NoStore if there is none."""
        self.refresh()
        with self._held() as store:
            if store is None:
                why = f": {self._last_error}" if self._last_error else ""
                raise NoStore(f"no store at {self.folder}{why}")
            yield store

    @contextmanager
    def _held(self) -> Iterator[LatentStore | None]:
        """The current store (None if there is none) held open until the block ends; no refresh."""
        with self._lock:
            opened = self._current
            if opened is not None:
                opened.users += 1
        if opened is None:
            yield None
            return
        try:
            yield opened.store
        finally:
            with self._lock:
                opened.users -= 1
                close = opened.retired and opened.users == 0
            if close:
                opened.store.close()

    def refresh(self, force: bool = False) -> bool:
        """Reopen the store if its manifest changed (checked at most every `check_interval` s unless
        `force`); True if a new store was swapped in. A failed reopen keeps the old store and is logged."""
        now = time.monotonic()
        with self._lock:
            if not force and now - self._checked_at < self.check_interval:
                return False
            self._checked_at = now
        if not self._reopening.acquire(blocking=force):
            return False  # another call is reopening; queries go on with the current store meanwhile
        try:
            return self._reopen()
        finally:
            self._reopening.release()

    def _reopen(self) -> bool:
        with self._lock:
            known = self._current.stamp if self._current else None
        stamp = _manifest_stamp(self.folder)
        if stamp is None or stamp == known:
            if stamp is None and known is None:
                self._last_error = "it has no manifest (not indexed yet?)"
            return False
        try:
            store = LatentStore.open(self.folder, read_only=True)
        except StoreError as exc:  # e.g. caught between two files of a save: try again next check
            self._last_error = str(exc)
            log.warning("cannot open the store at %s: %s", self.folder, exc)
            return False
        with self._lock:
            previous = self._current.store if self._current else None
        if self.records is not None:
            if previous is None:
                self.records.first(store)
            else:
                self.records.carry(previous, store)
        with self._lock:
            old, self._current = self._current, _Opened(store, stamp)
            self._last_error = None
            if old is not None:
                self.reloads += 1
                old.retired = True
                close_old = old.users == 0
            else:
                close_old = False
        if old is not None and self.records is not None:
            self.records.refresh_soon()
        if close_old and old is not None:
            old.store.close()
        if old is not None:
            log.info("store at %s changed: reopened (%d images)", self.folder, store.info.image_count)
        return True

    def close(self) -> None:
        """Close the current store (after the queries using it); `use` then raises NoStore."""
        with self._lock:
            opened, self._current = self._current, None
            self._checked_at = float("inf")  # no reopen after close
            if opened is None:
                return
            opened.retired = True
            close = opened.users == 0
        if close:
            opened.store.close()


def _manifest_stamp(folder: Path) -> tuple[int, int, int] | None:
    try:
        info = (folder / MANIFEST_FILE).stat()
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns
