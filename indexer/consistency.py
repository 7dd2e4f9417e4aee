"""Keeps a store's vectors consistent with its catalog: `reconcile_vectors` repairs, `verify_store` reports.

The catalog is the source of truth: every ok row carries its latent, and the FAISS index is derived from
those rows. Both functions work on the store's parts (catalog, vectors, the `VectorSpec` they must match);
`LatentStore` calls them under its lock and saves what they change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import select

from latentdex.errors import BadLatent, DimensionMismatch
from latentdex.indexer.catalog import Catalog, ImageRow, get_meta, ok_latents, status_counts
from latentdex.indexer.vectors import VectorIndex, check_vectors, prepare_vectors
from latentdex.indexer.whitening import DUPLICATE_POWER, Whitening


@dataclass(frozen=True)
class VectorSpec:
    """What every vector of a store must be: from which model, how long, under which metric and index.

    Under the "whitened" metric FAISS holds `whitening`-transformed latents compared by cosine (by
    cosine on raw mu while the store is too small to fit one); under "cosine" and "l2", the latents.
    """

    model_id: str
    latent_dim: int
    metric: str
    index_type: str
    whitening: Whitening | None = None
    max_index_bytes: int | None = None  # the RAM budget "auto" picks the index type within

    @property
    def index_metric(self) -> str:
        """The metric FAISS searches with, and the one raw latents are checked under (a zero mu has no
        cosine direction, also in a whitened store that has not fitted its transform yet)."""
        return "cosine" if self.metric == "whitened" else self.metric

    @property
    def whitening_id(self) -> str:
        return self.whitening.id if self.whitening is not None else ""

    def to_index(self, latents: np.ndarray) -> np.ndarray:
        """Checked raw latents -> the vectors FAISS holds for them."""
        return self._whitened(latents, None)

    def to_duplicate_space(self, latents: np.ndarray) -> np.ndarray:
        """Checked raw latents -> the vectors duplicate distances compare (by `index_metric`): under
        "whitened", the store's whitening fully whitened (`whitening.DUPLICATE_POWER`), which the
        duplicate presets are calibrated in; else the vectors FAISS holds."""
        return self._whitened(latents, DUPLICATE_POWER)

    def _whitened(self, latents: np.ndarray, power: float | None) -> np.ndarray:
        """`latents` through the store's whitening (at `power`; None: its own), where it has one."""
        if self.metric != "whitened" or self.whitening is None or not len(latents):
            return latents
        whitening = self.whitening if power is None else self.whitening.at_power(power)
        return whitening.apply(latents)


@dataclass
class ReconcileReport:
    """What `reconcile` changed in the vectors to match the catalog."""

    removed: int = 0  # vectors whose id had no ok row
    readded: int = 0  # ok rows whose vector was missing, stale or duplicated, added from the stored latent
    rebuilt: bool = False  # the whole index was rebuilt from the catalog; `notes` says why
    unrecoverable: list[int] = field(default_factory=list)  # ok rows whose stored latent is unusable
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.removed or self.readded or self.rebuilt)


@dataclass
class VerifyReport:
    """Every inconsistency `verify` found; `ok` when there is none."""

    missing_vectors: list[int] = field(default_factory=list)  # ok rows with no vector
    orphan_vectors: list[int] = field(default_factory=list)  # vectors with no ok row
    duplicate_vectors: list[int] = field(default_factory=list)  # ids held more than once
    stale_vectors: list[int] = field(default_factory=list)  # vector differs from the stored latent
    stale_rerank_rows: list[int] = field(default_factory=list)  # IVF-PQ: exact row missing or different
    rows_without_latent: list[int] = field(default_factory=list)
    bad_latents: list[int] = field(default_factory=list)  # wrong length, NaN or infinite
    foreign_model_rows: list[int] = field(default_factory=list)  # ok rows of another model_id
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


_VERIFY_LABELS = {
    "missing_vectors": "ok images have no vector",
    "orphan_vectors": "vectors have no ok image",
    "duplicate_vectors": "ids are held more than once in FAISS",
    "stale_vectors": "vectors differ from the stored latent",
    "stale_rerank_rows": "re-rank rows are missing or differ from the stored latent",
    "rows_without_latent": "ok images have no stored latent",
    "bad_latents": "stored latents are unusable (wrong length, NaN or infinite)",
    "foreign_model_rows": "ok images come from another model",
}


def decode_latent(blob: bytes, spec: VectorSpec) -> np.ndarray | None:
    """A stored latent, or None if it is unusable (wrong length, NaN, infinite, zero under cosine)."""
    if len(blob) != 4 * spec.latent_dim:
        return None
    try:
        return check_vectors(np.frombuffer(blob, dtype=np.float32)[None], spec.latent_dim, spec.index_metric)[
            0
        ]
    except (BadLatent, DimensionMismatch):
        return None


def usable_latents(
    catalog: Catalog, ids: np.ndarray | None, spec: VectorSpec, report: ReconcileReport
) -> tuple[np.ndarray, np.ndarray]:
    """Stored latents of the ok rows among `ids` (all ok rows if None); unusable ones go to the report."""
    good_ids, good = [], []
    with catalog.reading() as session:
        for image_id, blob, _ in ok_latents(session, None if ids is None else ids.tolist()):
            latent = None if blob is None else decode_latent(blob, spec)
            if latent is None:
                report.unrecoverable.append(image_id)
            else:
                good_ids.append(image_id)
                good.append(latent)
    vectors = np.stack(good) if good else np.empty((0, spec.latent_dim), dtype=np.float32)
    return np.array(good_ids, dtype=np.int64), vectors


def rebuild_vectors(catalog: Catalog, spec: VectorSpec, report: ReconcileReport) -> VectorIndex:
    """A new index of `spec.index_type` holding every usable ok latent; the report says what it did."""
    ids, latents = usable_latents(catalog, None, spec, report)
    return index_latents(spec, ids, latents, report)


def index_latents(
    spec: VectorSpec, ids: np.ndarray, latents: np.ndarray, report: ReconcileReport
) -> VectorIndex:
    """A new index of `spec.index_type` holding `latents` (raw, `spec` transforms them) under `ids`."""
    index, notes = VectorIndex.build(
        spec.index_type, spec.latent_dim, spec.index_metric, ids, spec.to_index(latents), spec.max_index_bytes
    )
    report.rebuilt, report.readded = True, len(ids)
    report.notes += notes
    return index


def reconcile_vectors(
    catalog: Catalog, vectors: VectorIndex | None, spec: VectorSpec, load_error: str | None
) -> tuple[VectorIndex, ReconcileReport]:
    """Make `vectors` match the catalog's ok rows; return the index to use from now on and what changed.

    `load_error` (or `vectors` None, or a file the catalog did not record) means the vectors cannot be
    trusted: the index is rebuilt from the stored latents. Otherwise it is repaired in place: vectors
    without an ok row are removed; ok rows whose vector is missing, duplicated or newer than the saved
    generation are re-added from their latents. The caller saves the result when `report.changed`.
    """
    report = ReconcileReport()
    with catalog.reading() as session:
        saved_digest = get_meta(session, "vectors_digest")
        saved_generation = int(get_meta(session, "vectors_generation") or 0)
        saved_whitening = get_meta(session, "vectors_whitening") or ""
        ok = session.execute(select(ImageRow.id, ImageRow.generation).where(ImageRow.status == "ok")).all()
    if vectors is None and load_error is None:
        load_error = "there is no vectors index"
    if load_error is None and vectors is not None and vectors.digest != saved_digest:
        load_error = "it is not the file the catalog last recorded (saved behind the store's back?)"
    if load_error is None and saved_whitening != spec.whitening_id:
        load_error = "it was built with another whitening transform than the catalog's"
    if load_error is not None or vectors is None:
        report.notes.append(f"rebuilt the vectors file from the catalog's latents: {load_error}")
        vectors = rebuild_vectors(catalog, spec, report)
    else:
        ok_ids = np.array([i for i, _ in ok], dtype=np.int64)
        newer = np.array([i for i, g in ok if g > saved_generation], dtype=np.int64)
        unique, copies = np.unique(vectors.ids(), return_counts=True)
        orphans = np.setdiff1d(unique, ok_ids)
        report.removed = len(orphans)
        vectors.remove(orphans)
        again = np.union1d(np.setdiff1d(ok_ids, unique), np.union1d(newer, unique[copies > 1]))
        ids, latents = usable_latents(catalog, np.intersect1d(again, ok_ids), spec, report)
        vectors.add(ids, spec.to_index(latents))
        report.readded = len(ids)
    if report.unrecoverable:
        report.notes.append(f"{len(report.unrecoverable)} ok rows have unusable latents: re-index them")
    return vectors, report


ExactRows = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def verify_store(
    catalog: Catalog,
    vectors: VectorIndex,
    spec: VectorSpec,
    manifest: Mapping[str, object],
    exact_rows: ExactRows | None = None,
) -> VerifyReport:
    """Check catalog, vectors and `manifest` (the manifest file's JSON document) against each other.

    IVF-PQ keeps only codes, so its vectors cannot be read back: `exact_rows(ids)` gives the exact rows
    it re-ranks with ((ids found, their vectors)), checked against the latents instead.
    Changes nothing. Every kind of disagreement gets its id list in the report and a line in `problems`.
    """
    report = VerifyReport()
    live = vectors.ids()
    ok_list, latents = [], []
    with catalog.reading() as session:
        for image_id, blob, model_id in ok_latents(session):
            ok_list.append(image_id)
            if model_id != spec.model_id:
                report.foreign_model_rows.append(image_id)
            if blob is None:
                report.rows_without_latent.append(image_id)
            elif (latent := decode_latent(blob, spec)) is None:
                report.bad_latents.append(image_id)
            else:
                latents.append((image_id, latent))
        failed = status_counts(session).get("failed", 0)
    ok_ids = np.array(ok_list, dtype=np.int64)
    unique, copies = np.unique(live, return_counts=True)
    report.duplicate_vectors = unique[copies > 1].tolist()
    report.orphan_vectors = np.setdiff1d(unique, ok_ids).tolist()
    usable = np.array([i for i, _ in latents], dtype=np.int64)  # the others are reported as such
    report.missing_vectors = np.setdiff1d(usable, unique).tolist()
    in_index = set(unique.tolist())
    present = [(i, v) for i, v in latents if i in in_index]
    if present:
        ids = np.array([i for i, _ in present], dtype=np.int64)
        expected = prepare_vectors(spec.to_index(np.stack([v for _, v in present])), spec.index_metric)
        if vectors.kind != "ivfpq":
            differs = ~np.isclose(vectors.vectors(ids), expected, atol=1e-5).all(axis=1)
            report.stale_vectors = ids[differs].tolist()
        elif exact_rows is not None:
            report.stale_rerank_rows = _differing_rows(ids, expected, exact_rows)
    for name, label in _VERIFY_LABELS.items():
        if ids := getattr(report, name):
            report.problems.append(f"{len(ids)} {label}: ids {ids[:10]}{' ...' if len(ids) > 10 else ''}")
    report.problems += manifest_problems(manifest, spec, len(ok_ids), failed)
    return report


def _differing_rows(ids: np.ndarray, expected: np.ndarray, exact_rows: ExactRows) -> list[int]:
    """The ids whose exact row is missing or differs from `expected` (rows of `ids`, in that order)."""
    found_ids, found = exact_rows(ids)
    row_of = {int(i): row for row, i in enumerate(ids.tolist())}
    places = np.array([row_of[int(i)] for i in found_ids], dtype=np.int64)
    differs = ~np.isclose(found, expected[places], atol=1e-5).all(axis=1)
    return np.union1d(np.setdiff1d(ids, found_ids), found_ids[differs]).tolist()


def manifest_problems(
    manifest: Mapping[str, object], spec: VectorSpec, ok_count: int, failed_count: int
) -> list[str]:
    """Where the manifest's model, dimension and counts disagree with the catalog's, one line each."""
    actual = {"model_id": spec.model_id, "latent_dim": spec.latent_dim, "image_count": ok_count}
    actual["failed_count"] = failed_count
    return [
        f"manifest says {key} = {manifest.get(key)!r}, the catalog {value!r}"
        for key, value in actual.items()
        if manifest.get(key) != value
    ]
