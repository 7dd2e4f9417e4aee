"""`latentdex index`, `stats`, `verify`, `export` and `import`: build a store from photos, look after it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from latentdex.errors import ModelMismatch
from latentdex.service.cli.exit_codes import INTERRUPTED, VERIFY_FAILED
from latentdex.service.cli.model_commands import ModelOption, PrecisionOption
from latentdex.service.cli.progress import progress_bar

if TYPE_CHECKING:
    from latentdex.indexer.pipeline import IndexProgress, IndexReport

IndexType = Literal["flat", "hnsw", "ivfpq", "auto"]
Metric = Literal["whitened", "cosine", "l2"]
StoreArgument = Annotated[Path, typer.Argument(help="Store folder.")]
MaxIndexMemory = Annotated[
    str | None,
    typer.Option(
        "--max-index-memory",
        help="RAM budget for the vector index (e.g. 2GB, 512MiB; 0: none): auto picks the best index "
        "type that fits. Kept by the store.",
    ),
]


def _budget(text: str | None) -> int | None:
    """--max-index-memory as bytes (0: no budget); None when not given; a usage error when malformed."""
    from latentdex.indexer.vectors import parse_size

    if text is None:
        return None
    if text.strip() == "0":
        return 0
    try:
        return parse_size(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--max-index-memory") from exc


def index(
    photos_dir: Annotated[Path, typer.Argument(help="Folder of photos, searched recursively.")],
    store: Annotated[Path, typer.Option("--store", help="Store folder; a store is made if none is there.")],
    model: ModelOption = None,
    index_type: Annotated[
        IndexType | None,
        typer.Option(help="FAISS index: flat (exact), hnsw, ivfpq, auto. Default: the store's, or flat."),
    ] = None,
    metric: Annotated[
        Metric | None,
        typer.Option(
            help="Distance for a new store: whitened (cosine after a PCA whitening fitted on the store), "
            "cosine or l2. Default: whitened; `latentdex rebuild --metric` changes it later."
        ),
    ] = None,
    max_index_memory: MaxIndexMemory = None,
    reencode: Annotated[
        bool, typer.Option("--reencode", help="Re-encode every image, e.g. with a model the store lacks.")
    ] = False,
    workers: Annotated[int | None, typer.Option(min=1, help="Decode processes; default 1 per core.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per encode batch and write.")] = 64,
    flush_every: Annotated[int, typer.Option(min=1, help="Batches between saves of the vectors file.")] = 16,
    precision: PrecisionOption = "auto",
    database: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="LATENTDEX_DB",
            help="For a new store: keep its catalog in this PostgreSQL database "
            "(postgresql+psycopg://user@host/db; the password from PGPASSWORD or ~/.pgpass).",
        ),
    ] = None,
    engine: Annotated[
        Literal["local", "ray"],
        typer.Option(help="local: decode processes here; ray: decode and encode on a Ray cluster."),
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(
            help="Ray cluster address (with --engine ray); default: a running one, or a new local one."
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=0, max=65535, help="Serve Prometheus metrics on this port during the run."),
    ] = None,
    metrics_file: Annotated[
        Path | None, typer.Option(help="Write Prometheus metrics here at the end (textfile collector).")
    ] = None,
    check_files: Annotated[
        bool,
        typer.Option(
            help="After indexing, compare the files of each new image and its nearest neighbours for "
            "the duplicate finder's region check (crops, captions, borders) and keep what they gave, so "
            "that `duplicates` and the web app's review need not read them; --no-check-files: leave "
            "that to the first report."
        ),
    ] = True,
) -> None:
    """Index PHOTOS_DIR into a store: encode new and changed images, follow moves, drop deleted ones."""
    if engine == "local":
        from latentdex.indexer.decoding import start_decode_helpers

        start_decode_helpers()  # before torch is imported, so that the two starts overlap
    from latentdex.indexer.pipeline import IndexOptions, index_folder
    from latentdex.models.inference import LatentCodec
    from latentdex.service.indexer_metrics import IndexerMetrics

    metrics = IndexerMetrics()
    if metrics_port is not None:
        metrics.serve(metrics_port)
    codec = LatentCodec.load(model, batch_size=batch_size, precision=precision)
    options = IndexOptions(
        index_type=index_type,
        metric=metric,
        max_index_bytes=_budget(max_index_memory),
        reencode=reencode,
        workers=workers,
        batch_size=batch_size,
        flush_every=flush_every,
        database=database,
        engine=engine,
        ray_address=address,
        model_dir=str(model) if model else None,
    )
    with progress_bar("img") as bar:
        task = bar.add_task("scanning", total=None, status="")

        def show(progress: IndexProgress) -> None:
            bar.update(task, description=progress.stage, completed=progress.done, total=progress.total)
            metrics.progress(progress)

        try:
            report = index_folder(photos_dir, store, codec, options, on_progress=show)
        except ModelMismatch as exc:
            raise ModelMismatch(f"{exc}. Pass --reencode to re-encode every image with this model") from exc
    metrics.report(report)
    if metrics_file is not None:
        metrics.write(metrics_file)
    _print_index_report(report, store)
    if report.interrupted:
        raise typer.Exit(INTERRUPTED)
    if check_files and report.indexed_ids:
        _compare_new_images(store, report.indexed_ids)


def _compare_new_images(store: Path, image_ids: list[int]) -> None:
    """The region check over the new images' candidate pairs, kept in the catalog (Ctrl-C keeps what
    was compared and leaves the rest to the first report)."""
    from latentdex.indexer.store import LatentStore
    from latentdex.service.duplicate_files import compare_new_images

    with LatentStore.open(store, read_only=True) as opened, progress_bar("pairs") as bar:
        task = bar.add_task("comparing files", total=None, status="new images' candidate pairs")

        def show(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        try:
            check = compare_new_images(opened, image_ids, threads=os.cpu_count() or 1, progress=show)
        except KeyboardInterrupt:
            typer.echo("files: comparison stopped; what was compared is kept, `duplicates` compares the rest")
            raise typer.Exit(INTERRUPTED) from None
    if check is not None:
        typer.echo(
            f"files: {check.pairs_checked} candidate pairs of new images compared for the duplicate finder"
            + (f" ({check.pairs_remembered} known from before)" if check.pairs_remembered else "")
            + f", {check.pairs_linked} crops or edits linked, {check.files_read} files read "
            f"({check.seconds:.1f} s)"
            + (f", {check.files_unreadable} not readable" if check.files_unreadable else "")
        )


def stats(
    store: StoreArgument,
    runs: Annotated[int, typer.Option(min=0, help="How many of the last runs to list.")] = 5,
) -> None:
    """Print a store's totals, model, index and disk use, and its last runs."""
    from latentdex.indexer.store import LatentStore

    with LatentStore.open(store, read_only=True) as opened:
        ok, failed = opened.count("ok"), opened.count("failed")
        typer.echo(f"store:       {opened.folder}")
        typer.echo(f"model:       {opened.model_id} (latent dim {opened.latent_dim})")
        typer.echo(f"metric:      {opened.metric}")
        if opened.metric == "whitened":
            typer.echo(f"whitening:   {opened.whitening_summary()}")
        typer.echo(f"index:       {opened.vector_kind} (configured: {opened.index_type})")
        typer.echo(f"             {opened.index_choice()}")
        typer.echo(f"images:      {ok} ok, {failed} failed")
        hashed = opened.hashed_count()
        missing = (
            "" if hashed == ok else "; the rest match duplicates by latent alone until `index` runs again"
        )
        typer.echo(f"hashes:      {hashed} of {ok} ok images have perceptual hashes{missing}")
        thumbnailed = opened.thumbnailed_count()
        missing = (
            ""
            if thumbnailed == ok
            else "; a query whose nearest include the rest is ranked by latent alone until `index` runs again"
        )
        typer.echo(f"thumbnails:  {thumbnailed} of {ok} ok images have alignment thumbnails{missing}")
        typer.echo(f"on disk:     {opened.disk_bytes():,} bytes")
        typer.echo(f"catalog:     {opened.catalog_name}")
        history = opened.runs()
    shown = history[-runs:] if runs else []
    typer.echo(f"runs:        {len(history)}" + (f", the last {len(shown)}:" if shown else ""))
    for run in shown:
        when = run.started_at.strftime("%Y-%m-%d %H:%M:%S")
        took = f"{(run.ended_at - run.started_at).total_seconds():.1f} s" if run.ended_at else "-"
        c = run.counts
        typer.echo(
            f"  run {run.id} {run.status:<11} {when} UTC {took:>8}  new {c.new} changed {c.changed} "
            f"unchanged {c.unchanged} moved {c.moved} deleted {c.deleted} failed {c.failed}"
        )


def verify(
    store: StoreArgument,
    read_only: Annotated[
        bool,
        typer.Option("--read-only", help="Check as is, changing nothing (works beside a running indexer)."),
    ] = False,
) -> None:
    """Check a store's catalog, vectors and manifest against each other; exit 7 if they disagree.

    By default the store is opened as a writer would, which first repairs what the catalog can repair
    (vectors a killed run did not save) and says so; --read-only reports the files exactly as they are.
    """
    from latentdex.indexer.store import LatentStore

    with LatentStore.open(store, read_only=read_only) as opened:
        repaired = opened.last_reconcile
        if repaired is not None and repaired.changed:
            typer.echo(
                f"repaired first: {repaired.readded} vectors re-added, {repaired.removed} removed"
                + (", index rebuilt" if repaired.rebuilt else "")
            )
        for note in repaired.notes if repaired else []:
            typer.echo(f"note: {note}")
        report = opened.verify()
        ok, failed = opened.count("ok"), opened.count("failed")
    if report.ok:
        typer.echo(f"consistent: {ok} ok images with one vector each, {failed} failed")
        return
    typer.echo(f"NOT consistent ({len(report.problems)} problems):")
    for problem in report.problems:
        typer.echo(f"  {problem}")
    raise typer.Exit(VERIFY_FAILED)


def rebuild(
    store: StoreArgument,
    metric: Annotated[
        Metric | None, typer.Option(help="Switch the store to this metric (whitened refits its transform).")
    ] = None,
    index_type: Annotated[IndexType | None, typer.Option(help="Switch to this FAISS index type.")] = None,
    max_index_memory: MaxIndexMemory = None,
) -> None:
    """Rebuild a store's vectors from its stored latents; a whitened store refits its whitening first.

    Stores made before the whitened metric keep searching by cosine until `--metric whitened`.
    """
    from latentdex.indexer.store import LatentStore

    with LatentStore.open(store) as opened:
        budget = _budget(max_index_memory)
        notes = opened.rebuild(index_type=index_type, metric=metric, max_index_bytes=budget)
        typer.echo(
            f"rebuilt {opened.vector_count} vectors: {opened.vector_kind} index, {opened.metric} metric"
        )
        if opened.metric == "whitened":
            typer.echo(f"whitening: {opened.whitening_summary()}")
    for note in notes:
        typer.echo(f"note: {note}")


def export(
    store: StoreArgument,
    out: Annotated[Path, typer.Option("--out", help="The file to write: .parquet or .npz.")],
    format: Annotated[
        Literal["parquet", "npz"] | None,
        typer.Option("--format", help="parquet or npz; default: told by the --out suffix."),
    ] = None,
) -> None:
    """Write every indexed image's id, path, metadata and latent to one Parquet or .npz file.

    Parquet holds one row per image with the latent as a fixed-size list of float32 and the model id
    and latent dimension in the file's metadata: the layout embedding tools read.
    """
    from latentdex.indexer.export import export_format, export_store
    from latentdex.indexer.store import LatentStore

    try:
        export_format(out, format)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--out") from exc
    with LatentStore.open(store, read_only=True) as opened:
        count = export_store(opened, out, format)
    typer.echo(f"exported {count} images to {out}")


def import_(
    source: Annotated[Path, typer.Argument(help="A Parquet or .npz file written by `latentdex export`.")],
    store: Annotated[Path, typer.Option("--store", help="The new store folder.")],
    index_type: Annotated[
        IndexType | None, typer.Option(help="FAISS index for the new store. Default: the exported store's.")
    ] = None,
    max_index_memory: MaxIndexMemory = None,
) -> None:
    """Create a new store from an export: same paths, metadata and latents; new ids."""
    from latentdex.indexer.export import import_store

    count = import_store(source, store, index_type, _budget(max_index_memory) or None)
    typer.echo(f"imported {count} images into {store}")


def _print_index_report(report: IndexReport, store: Path) -> None:
    counts = report.counts
    status = "interrupted" if report.interrupted else "complete"
    typer.echo(
        f"run {report.run_id} {status} in {report.seconds:.1f} s ({report.images_per_second:.1f} images/s): "
        f"{counts.new} new, {counts.changed} changed, {counts.unchanged} unchanged, {counts.moved} moved, "
        f"{counts.deleted} deleted, {counts.failed} failed"
    )
    if report.split is not None:
        typer.echo(f"cores: {report.split.describe()}")
    if report.failures:
        typer.echo(f"failed ({len(report.failures)}):")
        for path, reason in report.failures:
            typer.echo(f"  {_one_line(path)}: {_one_line(reason)}")
    if report.skipped:
        typer.echo(f"skipped ({len(report.skipped)}):")
        for path, reason in report.skipped:
            typer.echo(f"  {_one_line(path)}: {_one_line(reason)}")
    for note in report.notes:
        typer.echo(f"note: {note}")
    if report.interrupted:
        typer.echo(f"interrupted: what was indexed is saved in {store}; run the same command to finish")


def _one_line(text: str) -> str:
    """`text` with control characters escaped, so a file name with a newline cannot break the summary."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)
