"""A live store's records in memory, kept fresh off the query path.

Reading every record into a `RecordTable` takes about 10 s at a million images. A server opens a new
store state each time the indexer saves, and the query that notices the save must not wait that long,
nor should a long indexing run keep a core busy re-reading the catalog. So `RecordReloads` loads the
table once, synchronously, for the state a server starts with; each later state takes the previous
state's table as it is swapped in (a save behind, as the reader's vectors may be; ids it lacks are
read from the catalog) and, once it is current, a background thread reads a fresh one for the newest
state, at most once per `max(min_interval, factor x the last load's time)`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from latentdex.errors import StoreError
from latentdex.indexer.store import LatentStore

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 10.0
LOAD_TIME_FACTOR = 5.0


def wants_table(store: LatentStore) -> bool:
    """Memory mode (IVF-PQ) keeps a few bytes per image in RAM: its records stay in the catalog."""
    return store.vector_kind != "ivfpq"


class RecordReloads:
    """Loads record tables for a live store's states; `hold_current` yields the current store, held
    open for the block, or None once there is none."""

    def __init__(
        self,
        hold_current: Callable[[], AbstractContextManager[LatentStore | None]],
        min_interval: float = MIN_INTERVAL_S,
        factor: float = LOAD_TIME_FACTOR,
    ) -> None:
        self.hold_current = hold_current
        self.min_interval = min_interval
        self.factor = factor
        self.loads = 0  # tables read (for tests and logs)
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._wanted = False
        self._next_at = 0.0

    def first(self, store: LatentStore) -> None:
        """Load `store`'s table now: the state a server starts with answers fast from its first query."""
        if wants_table(store):
            self._load(store)

    def carry(self, previous: LatentStore, store: LatentStore) -> None:
        """Give the new state `store` the previous state's table, before it is swapped in."""
        if wants_table(store) and previous.record_table is not None:
            store.adopt_record_table(previous.record_table)

    def refresh_soon(self) -> None:
        """Read a fresh table for the current state (once it is swapped in: the worker loads whatever
        state is current when it runs, so one started earlier could load the state being replaced)."""
        with self._lock:
            self._wanted = True
            if self._worker is not None:
                return  # the running worker loads the newest state when it is free
            self._worker = threading.Thread(target=self._work, name="latentdex-records", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        while True:
            time.sleep(max(0.0, self._next_at - time.monotonic()))
            with self._lock:
                self._wanted = False
            with self.hold_current() as store:
                if store is not None and wants_table(store):
                    self._load(store)
            with self._lock:
                if not self._wanted:
                    self._worker = None
                    return

    def _load(self, store: LatentStore) -> None:
        started = time.monotonic()
        try:
            table = store.load_record_table()
        except StoreError as exc:
            log.warning(
                "records of %s stay in the catalog (%s): queries read them from there", store.folder, exc
            )
            return
        seconds = time.monotonic() - started
        self.loads += 1
        self._next_at = time.monotonic() + max(self.min_interval, self.factor * seconds)
        log.info("%d records in memory (%.1f MB) in %.2f s", len(table), table.nbytes / 1e6, seconds)
