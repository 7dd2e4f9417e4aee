"""The SQL half of a store: the images, indexing runs and store facts in SQLite, and their plain records.

Paths are relative to the indexed root, with POSIX separators. A file name is any bytes, and a name that
is not UTF-8 reaches Python as a str with surrogate escapes (`os.fsdecode`). So `path_bytes`, the name's
exact bytes (`str.encode("utf-8", "surrogateescape")`), is the unique key and round-trips any name, while
`path` holds readable text (undecodable bytes shown as `\\xe9`) for people and SQL queries only.

`images.id` is the FAISS id. AUTOINCREMENT keeps SQLite from handing out the id of a deleted row again: a
reused id would let a stale vector in an unsaved FAISS file pass for the new image's vector.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import (
    URL,
    BigInteger,
    CheckConstraint,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
    func,
    inspect,
    or_,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from latentdex.errors import NotFound, StoreError
from latentdex.indexer import schema
from latentdex.indexer.perceptual_hash import to_stored
from latentdex.indexer.relative_paths import path_key

BUSY_TIMEOUT_MS = 30_000
PG_WRITE_LOCK = (
    0x6C61_7465_6E74  # "latent": the advisory lock key that orders writers of a PostgreSQL catalog
)
_BEGIN_OPTION = "latentdex_begin"
_SQL_BATCH = 500  # ids per IN (...) query, well below SQLite's bound-parameter limit
# `LatentStore.reset_model` gives rows awaiting re-encoding this size: no file has it, so the next index run
# sees every such file as changed and re-encodes it, even if that run is not the one that reset the model.
REENCODE_SIZE = -1


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime, kept naive-UTC in SQLite (which has no time zones)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None or value.tzinfo is None:
            return value
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


# 64-bit where the value needs it (nanosecond mtimes, file sizes); plain INTEGER in SQLite, whose
# integers are 64-bit anyway and whose AUTOINCREMENT needs exactly "INTEGER".
BigInt = BigInteger().with_variant(Integer(), "sqlite")


class ImageRow(Base):
    __tablename__ = "images"
    __table_args__ = (
        CheckConstraint("status IN ('ok', 'failed')", name="image_status"),
        CheckConstraint("status = 'failed' OR latent IS NOT NULL", name="ok_image_has_latent"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(Text)
    path_bytes: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    size: Mapped[int] = mapped_column(BigInt)
    mtime_ns: Mapped[int] = mapped_column(BigInt)
    content_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    width: Mapped[int | None]
    height: Mapped[int | None]
    format: Mapped[str | None] = mapped_column(String(16))
    capture_time: Mapped[datetime | None] = mapped_column(DateTime)  # EXIF local time, no zone
    camera_make: Mapped[str | None] = mapped_column(Text)
    camera_model: Mapped[str | None] = mapped_column(Text)
    model_id: Mapped[str | None] = mapped_column(String(64))
    indexed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(8))
    failure_reason: Mapped[str | None] = mapped_column(Text)
    latent: Mapped[bytes | None] = mapped_column(LargeBinary)  # float32; FAISS is rebuilt from these
    # The store-wide write generation that last set `latent`; reconcile re-adds vectors newer than the
    # generation the saved FAISS file holds.
    generation: Mapped[int] = mapped_column(default=0, index=True)
    # pHashes (`indexer.perceptual_hash`): the whole picture's, signed, and five regions' (40 bytes); None
    # for images indexed before they were kept. Deferred: a catalog opened read-only at an older revision
    # lacks these columns, and row reads must not name them.
    perceptual_hash: Mapped[int | None] = mapped_column(BigInt, deferred=True)
    region_hashes: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    # `indexer.pixel_alignment`'s thumbnail of the model frame (1 KB); None as for the hashes.
    alignment_thumbnail: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (CheckConstraint("status IN ('running', 'complete', 'interrupted')", name="run_status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    root: Mapped[str] = mapped_column(Text)
    new: Mapped[int] = mapped_column(default=0)
    changed: Mapped[int] = mapped_column(default=0)
    unchanged: Mapped[int] = mapped_column(default=0)
    moved: Mapped[int] = mapped_column(default=0)
    deleted: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default="running")


class MetaRow(Base):
    __tablename__ = "store_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


@dataclass(kw_only=True)
class ImageRecord:
    """One image as the store knows it; `id` is None until the store assigns one."""

    id: int | None = None
    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    capture_time: datetime | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    model_id: str | None = None
    indexed_at: datetime | None = None
    status: str = "ok"
    failure_reason: str | None = None

    @property
    def display_path(self) -> str:
        """`path` printable anywhere: bytes that are not UTF-8 shown as `\\xe9`."""
        return printable_path(self.path)


@dataclass
class RunCounts:
    """What an indexing run found, file by file."""

    new: int = 0
    changed: int = 0
    unchanged: int = 0
    moved: int = 0
    deleted: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """The part of an image row that change detection compares with the file on disk."""

    id: int
    path: str  # as `ImageRecord.path`: relative, POSIX, surrogate escapes for non-UTF-8 bytes
    size: int
    mtime_ns: int
    content_hash: str | None
    status: str
    model_id: str | None
    failure_reason: str | None


@dataclass
class RunRecord:
    id: int
    root: str
    started_at: datetime
    ended_at: datetime | None
    status: str
    counts: RunCounts = field(default_factory=RunCounts)


# The fields a record and a row share under the same name (the path and the id are mapped apart).
RECORD_FIELDS = tuple(name for name in ImageRecord.__dataclass_fields__ if name not in ("id", "path"))


def display_path(key: bytes) -> str:
    return key.decode("utf-8", "backslashreplace")


def printable_path(path: str) -> str:
    """A relative path printable anywhere: bytes that are not UTF-8 shown as `\\xe9`."""
    return display_path(path_key(path))


def to_record(row: ImageRow) -> ImageRecord:
    """The plain record of a row; no ORM object leaves the store."""
    return ImageRecord(
        id=row.id,
        path=row.path_bytes.decode("utf-8", "surrogateescape"),
        **{name: getattr(row, name) for name in RECORD_FIELDS},
    )


def fill_row(row: ImageRow, record: ImageRecord) -> None:
    """Copy a record's fields (not its id or latent) onto a row."""
    key = path_key(record.path)
    row.path_bytes, row.path = key, display_path(key)
    for name in RECORD_FIELDS:
        setattr(row, name, getattr(record, name))
    if row.indexed_at is None:
        row.indexed_at = datetime.now(UTC)


def to_run_record(row: RunRow) -> RunRecord:
    counts = RunCounts(**{name: getattr(row, name) for name in RunCounts.__dataclass_fields__})
    return RunRecord(row.id, row.root, row.started_at, row.ended_at, row.status, counts)


CatalogLocation = Path | str  # a SQLite file, or the SQLAlchemy URL of a PostgreSQL database


def is_database_url(location: CatalogLocation) -> bool:
    """True for a database URL ("postgresql+psycopg://..."), False for a SQLite file's path."""
    return isinstance(location, str) and "://" in location


def public_url(url: str) -> str:
    """`url` without its password: what a manifest or a message may show. libpq finds the password
    (PGPASSWORD, ~/.pgpass) when the store is opened again."""
    return make_url(url).set(password=None).render_as_string(hide_password=False)


class Catalog:
    """One catalog: a SQLite file or a PostgreSQL database; its engine, sessions, and the store facts.

    Sessions are short and per call. Write transactions exclude each other (SQLite: BEGIN IMMEDIATE;
    PostgreSQL: a transaction-scoped advisory lock), so a second writer waits instead of failing
    halfway through; read transactions never block the writer (SQLite's WAL, PostgreSQL's MVCC).
    The schema is kept by Alembic migrations (`indexer.schema`).
    """

    def __init__(self, location: CatalogLocation, *, read_only: bool = False) -> None:
        self.location: CatalogLocation = location if is_database_url(location) else Path(location)
        self.read_only = read_only
        self.engine = _open_engine(self.location)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def name(self) -> str:
        """The file's path, or the database URL without its password."""
        return public_url(str(self.location)) if is_database_url(self.location) else str(self.location)

    @classmethod
    def create(cls, location: CatalogLocation, meta: dict[str, str]) -> Catalog:
        """Create the schema (every migration) in a new file or an empty database; record `meta`."""
        catalog = cls(location)
        try:
            schema.upgrade(catalog.engine)
            with catalog.writing() as session:
                for key, value in meta.items():
                    session.add(MetaRow(key=key, value=value))
        except SQLAlchemyError as exc:
            catalog.close()
            raise StoreError(f"cannot create the catalog in {catalog.name}: {exc}") from exc
        return catalog

    @classmethod
    def open(cls, location: CatalogLocation, *, read_only: bool = False) -> Catalog:
        """Open an existing catalog; unless `read_only`, migrate it to this build's schema (Alembic alone
        decides the schema). Raises StoreError if it is missing, unreachable, not a latentdex catalog, or
        at a revision this build does not know (made by a newer one)."""
        if not is_database_url(location) and not Path(location).is_file():
            raise StoreError(f"{location} is missing: the store's catalog is gone")
        catalog = cls(location, read_only=read_only)
        try:
            with catalog.reading() as session:
                if get_meta(session, "model_id") is None:
                    raise StoreError(f"{catalog.name} is not a latentdex catalog (it names no model)")
            schema.check_known(catalog.engine)
            if not read_only:
                schema.upgrade(catalog.engine)
        except SQLAlchemyError as exc:
            catalog.close()
            raise StoreError(f"{catalog.name} is not a readable latentdex catalog: {exc}") from exc
        except StoreError:
            catalog.close()
            raise
        return catalog

    @contextmanager
    def writing(self, *, annotations: bool = False) -> Iterator[Session]:
        """A session in one write transaction, committed on success and rolled back on error.

        `annotations`: a write of the users' own annotations (directions), which a read-only opener may
        make: they are no part of the index that the store's one writer keeps consistent.
        """
        if self.read_only and not annotations:
            raise StoreError("the store is open read-only")
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session in one short read transaction; keep it short, a long reader stalls WAL checkpoints."""
        with self._sessions() as session:
            session.connection(execution_options={_BEGIN_OPTION: "DEFERRED"})
            yield session

    def close(self) -> None:
        self.engine.dispose()


def write_images(
    session: Session,
    records: Sequence[ImageRecord],
    latents: Sequence[bytes] | None,
    *,
    failed: bool,
    generation: int,
    perceptual_hashes: Sequence[np.ndarray | None] | None = None,
    thumbnails: Sequence[bytes | None] | None = None,
) -> list[int]:
    """Insert or update one row per record (by id, else by path); return the ids in record order.

    `failed`: rows become "failed" and lose their latent. Otherwise rows become "ok" with `latents`
    (stamped with `generation`), `perceptual_hashes` (per record, `indexer.perceptual_hash`'s array;
    None: unknown) and alignment `thumbnails` (per record, `indexer.pixel_alignment`'s bytes, or None),
    or keep the latent, hashes and thumbnail they have when `latents` is None. Raises NotFound
    for an unknown id (or, metadata only, an unknown path), StoreError for a path held by another id
    or a metadata-only update of an image without a latent.
    """
    keys = [path_key(record.path) for record in records]
    if len(set(keys)) != len(keys):
        raise ValueError("the same path appears twice in one call")
    by_path = {
        row.path_bytes: row for row in session.scalars(select(ImageRow).where(ImageRow.path_bytes.in_(keys)))
    }
    rows = []
    for index, (record, key) in enumerate(zip(records, keys, strict=True)):
        row = by_path.get(key)
        if record.id is not None:
            if row is not None and row.id != record.id:
                raise StoreError(f"{display_path(key)} belongs to image {row.id}, not {record.id}")
            row = rows_by_id(session, [record.id])[0]
        elif row is None and latents is None and not failed:
            raise NotFound(f"{display_path(key)} is not in the store")
        elif row is None:
            row = ImageRow()
            session.add(row)
        fill_row(row, record)
        row.status, row.failure_reason = ("failed", record.failure_reason) if failed else ("ok", None)
        if failed:
            row.latent, row.perceptual_hash, row.region_hashes = None, None, None
            row.alignment_thumbnail = None
        elif latents is not None:
            row.latent, row.generation = latents[index], generation
            hashes = None if perceptual_hashes is None else perceptual_hashes[index]
            row.perceptual_hash, row.region_hashes = to_stored(hashes)
            row.alignment_thumbnail = None if thumbnails is None else thumbnails[index]
        elif row.latent is None:
            raise StoreError(f"image {row.id} has no latent: upsert it with one")
        rows.append(row)
    session.flush()
    return [row.id for row in rows]


def count_with_latent(session: Session, *, ids: Sequence[int] = (), keys: Sequence[bytes] = ()) -> int:
    """How many of the rows with these ids, or these path keys, hold a latent (and so a vector)."""
    has_latent = ImageRow.latent.is_not(None)
    count = 0
    for column, values in ((ImageRow.id, [int(i) for i in ids]), (ImageRow.path_bytes, list(keys))):
        for start in range(0, len(values), _SQL_BATCH):
            chunk = values[start : start + _SQL_BATCH]
            count += session.scalar(select(func.count()).where(column.in_(chunk), has_latent)) or 0
    return count


def rows_by_id(session: Session, ids: Sequence[int]) -> list[ImageRow]:
    """The rows of `ids`, in that order; NotFound if any is unknown."""
    wanted = [int(i) for i in ids]
    found: dict[int, ImageRow] = {}
    for start in range(0, len(wanted), _SQL_BATCH):
        query = select(ImageRow).where(ImageRow.id.in_(wanted[start : start + _SQL_BATCH]))
        found.update((row.id, row) for row in session.scalars(query))
    if missing := [i for i in wanted if i not in found]:
        raise NotFound(f"images {missing[:10]} are not in the store")
    return [found[i] for i in wanted]


def ok_latents(
    session: Session, ids: Sequence[int] | None = None
) -> Iterator[tuple[int, bytes | None, str | None]]:
    """(id, latent blob, model_id) of the ok rows among `ids`, or of every ok row; streamed."""
    base = select(ImageRow.id, ImageRow.latent, ImageRow.model_id).where(ImageRow.status == "ok")
    if ids is None:
        yield from session.execute(base.execution_options(yield_per=1000))
        return
    for start in range(0, len(ids), _SQL_BATCH):
        chunk = [int(i) for i in ids[start : start + _SQL_BATCH]]
        yield from session.execute(base.where(ImageRow.id.in_(chunk)))


def list_entries(session: Session) -> list[CatalogEntry]:
    """Every image row as a `CatalogEntry`, by id; no latents are read."""
    columns = (ImageRow.id, ImageRow.path_bytes, ImageRow.size, ImageRow.mtime_ns, ImageRow.content_hash)
    columns += (ImageRow.status, ImageRow.model_id, ImageRow.failure_reason)
    query = select(*columns).order_by(ImageRow.id).execution_options(yield_per=5000)
    return [
        CatalogEntry(row[0], row[1].decode("utf-8", "surrogateescape"), *row[2:])
        for row in session.execute(query)
    ]


def unhashed_images(session: Session) -> list[tuple[int, str, str | None]]:
    """(id, path, content hash) of the ok rows without perceptual hashes or an alignment thumbnail
    (indexed before they were kept), by id."""
    query = (
        select(ImageRow.id, ImageRow.path_bytes, ImageRow.content_hash)
        .where(
            ImageRow.status == "ok",
            or_(
                ImageRow.perceptual_hash.is_(None),
                ImageRow.region_hashes.is_(None),
                ImageRow.alignment_thumbnail.is_(None),
            ),
        )
        .order_by(ImageRow.id)
    )
    return [(row[0], row[1].decode("utf-8", "surrogateescape"), row[2]) for row in session.execute(query)]


# (image id, the content hash they were computed from, perceptual hashes, alignment thumbnail bytes)
PictureMarks = tuple[int, str | None, np.ndarray, bytes]


def add_perceptual_hashes(session: Session, items: Sequence[PictureMarks]) -> int:
    """Give each row its perceptual hashes and alignment thumbnail if it is still ok and still holds the
    file with that content hash (the one they were computed from); return how many rows took them."""
    taken = 0
    for image_id, content_hash, hashes, thumbnail in items:
        whole, regions = to_stored(hashes)
        statement = (
            update(ImageRow)
            .where(ImageRow.id == image_id, ImageRow.status == "ok", ImageRow.content_hash == content_hash)
            .values(perceptual_hash=whole, region_hashes=regions, alignment_thumbnail=thumbnail)
        )
        taken += session.execute(statement).rowcount or 0
    return taken


def mark_for_reencode(session: Session, reason: str) -> int:
    """Turn every ok row into a failed one awaiting re-encoding (no latent, size `REENCODE_SIZE`); count."""
    query = (
        update(ImageRow)
        .where(ImageRow.status == "ok")
        .values(status="failed", failure_reason=reason, latent=None, size=REENCODE_SIZE)
    )
    return session.execute(query).rowcount


def holds_nothing(location: CatalogLocation) -> bool:
    """True if the catalog at `location` has no image and no run (or lacks those tables altogether)."""
    engine = _open_engine(location if is_database_url(location) else Path(location))
    try:
        with Session(engine) as session:
            tables = set(inspect(session.connection()).get_table_names())
            images = session.scalar(select(func.count()).select_from(ImageRow)) if "images" in tables else 0
            runs = session.scalar(select(func.count()).select_from(RunRow)) if "runs" in tables else 0
        return not images and not runs
    except SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def drop_catalog_tables(location: CatalogLocation) -> None:
    """Drop every table of a catalog (and Alembic's version table): for an abandoned, empty create."""
    engine = _open_engine(location)
    try:
        with engine.begin() as connection:
            for table in ("directions", "images", "runs", "store_meta", "alembic_version"):
                connection.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    finally:
        engine.dispose()


def status_counts(session: Session) -> dict[str, int]:
    query = select(ImageRow.status, func.count()).group_by(ImageRow.status)
    return {status: count for status, count in session.execute(query)}


def start_run(session: Session, root: str) -> int:
    run = RunRow(started_at=datetime.now(UTC), root=root, status="running")
    session.add(run)
    session.flush()
    return run.id


def finish_run(session: Session, run_id: int, counts: RunCounts, status: str) -> None:
    run = session.get(RunRow, run_id)
    if run is None:
        raise NotFound(f"run {run_id} is not in the store")
    for name, value in asdict(counts).items():
        setattr(run, name, value)
    run.status, run.ended_at = status, datetime.now(UTC)


def interrupt_running_runs(session: Session) -> None:
    """Mark runs still "running" as "interrupted"; call only when no other writer can be running."""
    for run in session.scalars(select(RunRow).where(RunRow.status == "running")):
        run.status = "interrupted"


def list_runs(session: Session) -> list[RunRecord]:
    return [to_run_record(row) for row in session.scalars(select(RunRow).order_by(RunRow.id))]


def get_meta(session: Session, key: str) -> str | None:
    return session.scalar(select(MetaRow.value).where(MetaRow.key == key))


def set_meta(session: Session, key: str, value: str) -> None:
    session.merge(MetaRow(key=key, value=value))


def _open_engine(location: CatalogLocation) -> Engine:
    if is_database_url(location):
        return _open_postgres(str(location))
    engine = create_engine(URL.create("sqlite", database=str(location)))

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite would otherwise BEGIN on its own (deferred, and only before DML); _begin emits it.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode never corrupts the file; a power loss may drop the last commits, and reconcile
        # tolerates that (FAISS is derived from the rows). FULL would fsync the WAL on every commit.
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        connection.exec_driver_sql(
            f"BEGIN {connection.get_execution_options().get(_BEGIN_OPTION, 'IMMEDIATE')}"
        )

    return engine


def _open_postgres(url: str) -> Engine:
    if not url.startswith("postgresql"):
        raise StoreError(f"unsupported catalog database {public_url(url)}: use a postgresql+psycopg:// URL")
    engine = create_engine(url, pool_pre_ping=True)

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # The driver opens the transaction itself; a write transaction's first statement takes the
        # catalog's advisory lock, held to its end: writers take turns, as BEGIN IMMEDIATE makes them in
        # SQLite.
        if connection.get_execution_options().get(_BEGIN_OPTION, "IMMEDIATE") == "IMMEDIATE":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({PG_WRITE_LOCK})")

    return engine
