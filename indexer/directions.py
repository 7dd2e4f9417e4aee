"""Named latent directions ("smiling", "sunset", ...), kept in the store's catalog; reached through
`LatentStore.directions`.

A direction is a latent-space vector learnt from two groups of images (see `models.latent_space`); it
belongs to the model whose latents it was learnt on. Directions live in their own table of the catalog
(migration 0002) and do not touch images or vectors, so a server that opened the store read-only may still
write them (`Catalog.writing(annotations=True)`) while an indexer writes the store: the catalog's write
lock orders them with the indexer's transactions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy import Float, LargeBinary, Select, String, Text, UniqueConstraint, delete, inspect, select
from sqlalchemy.orm import Mapped, mapped_column

from latentdex.errors import NotFound, StoreError
from latentdex.indexer.catalog import Base, Catalog, UTCDateTime

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


class DirectionRow(Base):
    __tablename__ = "directions"
    __table_args__ = (UniqueConstraint("name", "model_id", name="direction_name_per_model"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    model_id: Mapped[str] = mapped_column(String(64))
    vector: Mapped[bytes] = mapped_column(LargeBinary)  # float32, the model's latent dimension
    method: Mapped[str] = mapped_column(String(32))
    separation: Mapped[float | None] = mapped_column(Float)  # held-out AUC of the two groups
    positive_count: Mapped[int]
    negative_count: Mapped[int]
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


@dataclass(frozen=True)
class Direction:
    """A stored direction: `vector` moves a latent from the negative group's side to the positive's."""

    name: str
    model_id: str
    vector: np.ndarray
    method: str
    separation: float | None
    positive_count: int
    negative_count: int
    description: str
    created_at: datetime


def check_name(name: str) -> str:
    """The name if it is 1-64 letters, digits, '_', '.', '-' (starting with a letter or digit)."""
    if not NAME_PATTERN.match(name):
        raise ValueError(
            f"direction names are 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit; "
            f"got {name!r}"
        )
    return name


class DirectionBook:
    """The directions of one store's catalog, through the store's own catalog connection."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog

    def save(self, direction: Direction, *, replace: bool = False) -> None:
        """Store `direction`; ValueError if one of that name (for that model) exists and not `replace`;
        StoreError if the catalog predates directions (open the store writable once to migrate it)."""
        check_name(direction.name)
        if not self._has_table():
            raise StoreError(
                f"{self._catalog.name} predates directions: open the store writable once "
                "(e.g. `latentdex verify STORE`) to bring its schema up to date"
            )
        with self._catalog.writing(annotations=True) as session:
            existing = session.scalar(self._by_name(direction.name, direction.model_id))
            if existing is not None and not replace:
                raise ValueError(f"a direction named {direction.name!r} exists: delete it or replace it")
            row = existing or DirectionRow()
            row.name, row.model_id = direction.name, direction.model_id
            row.vector = np.ascontiguousarray(direction.vector, dtype=np.float32).tobytes()
            row.method, row.separation = direction.method, direction.separation
            row.positive_count, row.negative_count = direction.positive_count, direction.negative_count
            row.description, row.created_at = direction.description, direction.created_at
            session.add(row)

    def get(self, name: str, model_id: str) -> Direction:
        """The direction `name` of `model_id`; NotFound if there is none."""
        if self._has_table():
            with self._catalog.reading() as session:
                row = session.scalar(self._by_name(name, model_id))
                if row is not None:
                    return _to_direction(row)
        raise NotFound(f"no direction named {name!r} for model {model_id}")

    def list(self, model_id: str | None = None) -> list[Direction]:
        """Every direction (of `model_id`, if given), by name."""
        if not self._has_table():
            return []
        query = select(DirectionRow).order_by(DirectionRow.name, DirectionRow.model_id)
        if model_id is not None:
            query = query.where(DirectionRow.model_id == model_id)
        with self._catalog.reading() as session:
            return [_to_direction(row) for row in session.scalars(query)]

    def delete(self, name: str, model_id: str) -> None:
        """Remove the direction `name` of `model_id`; NotFound if there is none."""
        if self._has_table():
            with self._catalog.writing(annotations=True) as session:
                deleted = session.execute(
                    delete(DirectionRow).where(DirectionRow.name == name, DirectionRow.model_id == model_id)
                ).rowcount
            if deleted:
                return
        raise NotFound(f"no direction named {name!r} for model {model_id}")

    @staticmethod
    def _by_name(name: str, model_id: str) -> Select[tuple[DirectionRow]]:
        return select(DirectionRow).where(DirectionRow.name == name, DirectionRow.model_id == model_id)

    def _has_table(self) -> bool:
        return inspect(self._catalog.engine).has_table(DirectionRow.__tablename__)


def new_direction(
    name: str,
    model_id: str,
    vector: np.ndarray,
    method: str,
    separation: float | None,
    counts: tuple[int, int],
    description: str = "",
) -> Direction:
    """A `Direction` made now."""
    return Direction(
        check_name(name),
        model_id,
        np.asarray(vector, dtype=np.float32),
        method,
        separation,
        counts[0],
        counts[1],
        description,
        datetime.now(UTC),
    )


def _to_direction(row: DirectionRow) -> Direction:
    return Direction(
        row.name,
        row.model_id,
        np.frombuffer(row.vector, dtype=np.float32).copy(),
        row.method,
        row.separation,
        row.positive_count,
        row.negative_count,
        row.description,
        row.created_at,
    )
