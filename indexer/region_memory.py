"""What the region check found for pairs of files, kept in the catalog so that no pair is checked twice.

Reading two files and fitting their local features costs milliseconds a pair, the whole cost of duplicate
finding that reads files. What it finds (`region_match.Overlap`) depends only on the two files' contents
and on the method's settings, so it is kept by the pair's content hashes (ordered, so a pair has one row)
and the method's signature (`region_match.METHOD`): a later run (after an import, or the web app's next
review) reads the files of new pairs alone. A file renamed or moved keeps its hash and its rows; an edited
one gets a new hash, and is checked again. The rules (`RegionRule`) are applied to the remembered
overlaps afresh, so recalibrating them needs no re-check, and a re-encode with another model keeps them.
Rows of files no longer indexed stay (about 100 bytes a pair): a file that comes back is not read again.

Like directions (`indexer.directions`), the rows are annotations: they touch no image or vector, so a
store opened read-only (a server, the `duplicates` command) writes them, in short transactions the
catalog's write lock orders with an indexer's. A catalog made before them (revision 0006) is used without
memory until it is opened writable once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from sqlalchemy import Float, Integer, String, bindparam, inspect, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, mapped_column

from latentdex.indexer.catalog import Base, Catalog
from latentdex.indexer.region_match import METHOD
from latentdex.indexer.region_rule import Overlap

LOG = logging.getLogger(__name__)
PairKey = tuple[str, str]  # two content hashes, the smaller first
_BATCH = 500  # hashes per IN (...) query, well under SQLite's bound-parameter limit


class OverlapRow(Base):
    __tablename__ = "region_overlaps"

    first_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    second_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    method: Mapped[str] = mapped_column(String(96))
    inliers: Mapped[int] = mapped_column(Integer)
    contained: Mapped[float] = mapped_column(Float)
    agreement: Mapped[float] = mapped_column(Float)


_RECALL = select(
    OverlapRow.first_hash,
    OverlapRow.second_hash,
    OverlapRow.inliers,
    OverlapRow.contained,
    OverlapRow.agreement,
).where(
    OverlapRow.first_hash.in_(bindparam("firsts", expanding=True)), OverlapRow.method == bindparam("method")
)


def pair_key(first_hash: str, second_hash: str) -> PairKey:
    """The row key of two files' content hashes, whichever order they come in."""
    return (first_hash, second_hash) if first_hash <= second_hash else (second_hash, first_hash)


class OverlapMemory:
    """The remembered overlaps of one store's catalog. A catalog error is logged and turns the memory
    off for the rest of the run: a report is never lost to its cache."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        self._usable: bool | None = None

    @property
    def usable(self) -> bool:
        """Whether the catalog has the table (a read-only catalog from before revision 0006 has not)."""
        if self._usable is None:
            try:
                with self._catalog.engine.connect() as connection:
                    self._usable = inspect(connection).has_table(OverlapRow.__tablename__)
            except SQLAlchemyError as exc:
                self._give_up("read", exc)
        return bool(self._usable)

    def recall(self, keys: Iterable[PairKey]) -> dict[PairKey, Overlap]:
        """The overlaps remembered for `keys` by this build's method; pairs never checked are absent."""
        wanted = set(keys)
        found: dict[PairKey, Overlap] = {}
        if not wanted or not self.usable:
            return found
        # By the key's first column, which SQLite finds through the primary key's index; a row-value
        # IN over both columns scans the table instead.
        firsts = sorted({first for first, _ in wanted})
        try:
            with self._catalog.reading() as session:
                connection = session.connection()  # rows as tuples: no ORM loading for many small rows
                for start in range(0, len(firsts), _BATCH):
                    batch = firsts[start : start + _BATCH]
                    rows = connection.execute(_RECALL, {"firsts": batch, "method": METHOD}).all()
                    for first, second, inliers, contained, agreement in rows:
                        if (first, second) in wanted:
                            found[first, second] = Overlap(inliers, contained, agreement)
        except SQLAlchemyError as exc:
            self._give_up("read", exc)
            return {}
        return found

    def remember(self, found: Mapping[PairKey, Overlap]) -> None:
        """Keep `found` (a pair's row from another method is replaced)."""
        if not found or not self.usable:
            return
        rows = [
            {
                "first_hash": first,
                "second_hash": second,
                "method": METHOD,
                "inliers": overlap.inliers,
                "contained": overlap.contained,
                "agreement": overlap.agreement,
            }
            for (first, second), overlap in sorted(found.items())
        ]
        dialect = postgresql if self._catalog.engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(OverlapRow)
        statement = statement.on_conflict_do_update(
            index_elements=["first_hash", "second_hash"],
            set_={name: statement.excluded[name] for name in ("method", "inliers", "contained", "agreement")},
        )
        try:
            with self._catalog.writing(annotations=True) as session:
                session.execute(statement, rows)
        except SQLAlchemyError as exc:
            self._give_up("write", exc)

    def _give_up(self, doing: str, exc: SQLAlchemyError) -> None:
        LOG.warning("cannot %s the region check's remembered pairs in %s: %s", doing, self._catalog.name, exc)
        self._usable = False
