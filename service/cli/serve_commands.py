"""`latentdex serve` and `latentdex query`: run the gRPC server, and ask one from the command line."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from latentdex.indexer.load import DEFAULT_MAX_PIXELS
from latentdex.indexer.search_filter import SearchFilter
from latentdex.service.cli.connection import (
    TOKEN_ENV,
    ServerOption,
    StoreOption,
    TimeoutOption,
    TlsCaOption,
    TlsCertOption,
    TlsKeyOption,
    TokenOption,
    connected,
)
from latentdex.service.cli.logs import LOG_LEVELS, configure_logging
from latentdex.service.cli.model_commands import ModelOption, PrecisionOption
from latentdex.service.contact_sheet import SheetTile, contact_sheet
from latentdex.service.limits import Limits
from latentdex.service.server_config import DEFAULT_PORT, LOOPBACK, MiB, ServerConfig, TlsFiles

if TYPE_CHECKING:
    from latentdex.service.client import DuplicateGroup, LatentdexClient, Match, QueryOptions, QueryResult
    from latentdex.service.server import RunningServer


def serve(
    store: Annotated[
        Path,
        typer.Option(
            "--store", envvar="LATENTDEX_STORE", help="Store folder (may be indexed later: it is picked up)."
        ),
    ],
    model: Annotated[
        Path | None,
        typer.Option(
            "--model", envvar="LATENTDEX_MODEL", help="Model directory (default: the shipped model)."
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            envvar="LATENTDEX_HOST", help="Address to bind; 0.0.0.0 or :: to listen beyond this machine."
        ),
    ] = LOOPBACK,
    port: Annotated[
        int, typer.Option(min=0, max=65535, envvar="LATENTDEX_PORT", help="Port; 0 picks a free one.")
    ] = DEFAULT_PORT,
    workers: Annotated[int, typer.Option(min=1, help="Threads answering calls.")] = 8,
    max_concurrent: Annotated[
        int, typer.Option(min=1, help="Calls in progress beyond which new ones get RESOURCE_EXHAUSTED.")
    ] = 64,
    max_message_mb: Annotated[int, typer.Option(min=1, help="Largest request or reply, MiB.")] = 32,
    max_preview_size: Annotated[
        int, typer.Option(min=16, max=4096, help="Largest preview or frame side, pixels.")
    ] = Limits.max_preview_size,
    grace: Annotated[
        float,
        typer.Option(min=0, help="Seconds calls in flight get after SIGTERM; then the process exits."),
    ] = ServerConfig.grace_seconds,
    max_pixels: Annotated[
        int, typer.Option(min=1, help="Largest image accepted, in pixels.")
    ] = DEFAULT_MAX_PIXELS,
    token: TokenOption = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate chain: serve TLS.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    tls_client_ca: Annotated[
        Path | None, typer.Option(help="PEM CA: require client certificates signed by it (mutual TLS).")
    ] = None,
    reload_interval: Annotated[
        float, typer.Option(min=0.05, help="Seconds between checks for a store the indexer updated.")
    ] = 1.0,
    threads: Annotated[int, typer.Option(min=0, help="Torch threads (0: one per core).")] = 0,
    faiss_threads: Annotated[int, typer.Option(min=1, help="FAISS threads per search.")] = 1,
    batch_queries: Annotated[
        bool, typer.Option(help="Answer concurrent queries by latent or id in shared engine calls.")
    ] = True,
    records_in_memory: Annotated[
        bool,
        typer.Option(help="Hold the store's records in RAM (~135 B/image; not for IVF-PQ stores)."),
    ] = True,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            envvar="LATENTDEX_METRICS_PORT",
            help="Serve Prometheus metrics on this HTTP port.",
        ),
    ] = None,
    http_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            envvar="LATENTDEX_HTTP_PORT",
            help="Serve the web app and the HTTP/JSON API on this port (0: a free one).",
        ),
    ] = None,
    log_format: Annotated[
        Literal["text", "json"],
        typer.Option(envvar="LATENTDEX_LOG_FORMAT", help="json: one JSON object per log line."),
    ] = "text",
    precision: PrecisionOption = "auto",
    log_level: Annotated[
        Literal["debug", "info", "warning", "error"],
        typer.Option(envvar="LATENTDEX_LOG_LEVEL", help="warning and above: no line per request."),
    ] = "info",
    processes: Annotated[
        int,
        typer.Option(
            min=1,
            envvar="LATENTDEX_PROCESSES",
            help="Server processes sharing the port, each with its own copy of the index: one answers "
            "from about one core, so use up to one per core.",
        ),
    ] = 1,
) -> None:
    """Serve a store over gRPC (and, with --http-port, in a browser): queries by image, latent and id,
    with decoded previews."""
    from latentdex.service.process_group import ServeSpec, open_engine, serve_processes
    from latentdex.service.server import exit_process, serve_forever

    configure_logging(log_format, LOG_LEVELS[log_level])
    if (tls_cert is None) != (tls_key is None):
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    if token is not None and not token.strip():
        raise typer.BadParameter(f"the bearer token (--token or ${TOKEN_ENV}) is empty")
    if tls_client_ca is not None and tls_cert is None:
        raise typer.BadParameter("--tls-client-ca needs --tls-cert and --tls-key")
    spec = ServeSpec(
        store=store,
        model=model,
        precision=precision,
        reload_interval=reload_interval,
        records_in_memory=records_in_memory,
        limits=Limits(max_image_pixels=max_pixels, max_preview_size=max_preview_size),
        torch_threads=threads,
        log_format=log_format,
        log_level=LOG_LEVELS[log_level],
    )
    tls = TlsFiles(tls_cert, tls_key, tls_client_ca) if tls_cert and tls_key else None
    config = ServerConfig(
        host=host,
        port=port,
        max_workers=workers,
        max_concurrent_rpcs=max_concurrent,
        max_message_bytes=max_message_mb * MiB,
        token=token,
        tls=tls,
        faiss_threads=faiss_threads,
        batch_queries=batch_queries,
        metrics_port=metrics_port,
        http_port=http_port,
        grace_seconds=grace,
    )
    if processes > 1:

        def ready(bound: int) -> None:
            typer.echo(f"{processes} processes serving on {host}:{bound}; Ctrl-C or SIGTERM stops")

        try:
            code = serve_processes(spec, config, processes, on_ready=ready)
        except ValueError as exc:  # options a process group cannot serve (metrics), before any work
            raise typer.BadParameter(str(exc), param_hint="--processes") from exc
        exit_process(code)
    engine, line = open_engine(spec)
    typer.echo(line, err=line.startswith("warning"))

    def ready(running: RunningServer) -> None:
        typer.echo(
            f"serving on {host}:{running.port} (model {engine.codec.model_id}, {engine.codec.precision}); "
            "Ctrl-C or SIGTERM stops"
        )

    try:
        stopped_by = serve_forever(engine, config, on_started=ready)
    finally:
        if engine.store is not None:
            engine.store.close()
    if stopped_by is not None:
        exit_process(0)


def query(
    image: Annotated[Path | None, typer.Argument(help="Query image (or use --id).")] = None,
    image_id: Annotated[int | None, typer.Option("--id", help="Query by an indexed image's id.")] = None,
    duplicates_of: Annotated[
        int | None,
        typer.Option(help="List the near-duplicates of this indexed image (the `near` preset) instead."),
    ] = None,
    server: ServerOption = None,
    store: StoreOption = None,
    model: ModelOption = None,
    k: Annotated[int, typer.Option("-k", "--k", min=1, help="How many matches.")] = 10,
    sheet: Annotated[Path | None, typer.Option(help="Write a contact sheet PNG here.")] = None,
    path_prefix: Annotated[str | None, typer.Option(help="Only images under this relative path.")] = None,
    after: Annotated[
        datetime | None, typer.Option(help="Only photos captured at or after (EXIF time, as written).")
    ] = None,
    before: Annotated[datetime | None, typer.Option(help="Only photos captured before.")] = None,
    min_width: Annotated[int | None, typer.Option(min=1, help="Only originals at least this wide.")] = None,
    min_height: Annotated[int | None, typer.Option(min=1, help="Only originals at least this tall.")] = None,
    image_format: Annotated[
        list[str] | None,
        typer.Option("--format", help="Only these file formats (JPEG, PNG, ...); repeatable."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the matches as JSON.")] = False,
    by_latent: Annotated[
        bool,
        typer.Option(
            "--by-latent", help="Order by latent distance alone (default: copies of the query first)."
        ),
    ] = False,
    token: TokenOption = None,
    tls_ca: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Ask a server for the images nearest to IMAGE (or to --id); print them, optionally as a sheet. The
    stored images that hold the query's pixels (crops, re-encodes, resizes) come first, the rest nearest
    first. With --duplicates-of ID: its near-duplicates, the suggested keeper first."""
    from latentdex.service.client import QueryOptions

    if duplicates_of is not None:
        if image is not None or image_id is not None:
            raise typer.BadParameter("--duplicates-of takes no IMAGE or --id")
    elif (image is None) == (image_id is None):
        raise typer.BadParameter("give either an IMAGE or --id")
    where = SearchFilter(
        path_prefix=path_prefix,
        captured_after=after,
        captured_before=before,
        min_width=min_width,
        min_height=min_height,
        formats=frozenset(image_format or ()),
    )
    options = QueryOptions(
        where=None if where.is_empty else where,
        previews=sheet is not None,
        query_preview=sheet is not None,
        thumbnails=sheet is not None,
        preview_size=128 if sheet is not None else 0,
        ranking="latent" if by_latent else "copies_first",
    )
    settings = {
        "token": token,
        "tls_ca": tls_ca,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "timeout": timeout,
    }
    if duplicates_of is not None:
        with connected(server, store, model, **settings) as client:  # type: ignore[arg-type]
            group = client.duplicates_of(duplicates_of)
        _print_group(duplicates_of, group, as_json)
        return
    with connected(server, store, model, **settings) as client:  # type: ignore[arg-type]
        result, query_tile = _ask(client, image, image_id, k, options)
    if as_json:
        typer.echo(json.dumps([_match_json(rank, m) for rank, m in enumerate(result.matches, 1)], indent=2))
    else:
        for rank, match in enumerate(result.matches, 1):
            typer.echo(f"{rank:3d}  distance {match.distance:.4f}  id {match.id:6d}  {match.path}")
    if sheet is not None:
        tiles = [query_tile] + [
            SheetTile(
                m.thumbnail.data if m.thumbnail else None,
                m.preview.data if m.preview else None,
                f"#{rank}  d={m.distance:.3f}\n{m.path}",
            )
            for rank, m in enumerate(result.matches, 1)
        ]
        sheet.parent.mkdir(parents=True, exist_ok=True)
        contact_sheet(tiles).save(sheet)
        typer.echo(f"contact sheet: {sheet} (per match: original | decoded latent)")


def _ask(
    client: LatentdexClient, image: Path | None, image_id: int | None, k: int, options: QueryOptions
) -> tuple[QueryResult, SheetTile]:
    from latentdex.service.client import QueryResult

    if image is not None:
        data = image.read_bytes()
        result = client.query_by_image(data, k, options)
        preview = result.query_preview.data if result.query_preview else None
        return result, SheetTile(data, preview, f"query\n{image.name}")
    assert image_id is not None
    result = client.query_by_id(image_id, k + 1, options, include_self=True)
    own = [m for m in result.matches if m.id == image_id]
    others = [m for m in result.matches if m.id != image_id][:k]
    first = own[0] if own else None
    tile = SheetTile(
        first.thumbnail.data if first and first.thumbnail else None,
        first.preview.data if first and first.preview else None,
        f"query id {image_id}\n{first.path if first else ''}",
    )
    return QueryResult(
        others, result.query_latent, result.query_preview, result.model_id, result.timings
    ), tile


def _print_group(image_id: int, group: DuplicateGroup | None, as_json: bool) -> None:
    members = group.members if group is not None else []
    if as_json:
        typer.echo(json.dumps([_match_json(rank, m) for rank, m in enumerate(members, 1)], indent=2))
        return
    if group is None:
        typer.echo(f"image {image_id} has no near-duplicate")
        return
    for rank, match in enumerate(members):
        mark = "keep" if rank == 0 else f"{match.distance:.4f}"
        size = f"{match.metadata.width}x{match.metadata.height}"
        typer.echo(f"{mark:>6}  id {match.id:6d}  {size:>11}  {match.path}")


def _match_json(rank: int, match: Match) -> dict[str, object]:
    meta = match.metadata
    return {
        "rank": rank,
        "id": match.id,
        "path": match.path,
        "distance": match.distance,
        "similarity": match.similarity,
        "width": meta.width,
        "height": meta.height,
        "format": meta.format,
        "capture_time": meta.capture_time.isoformat() if meta.capture_time else None,
        "content_hash": meta.content_hash,
    }


def health(
    server: Annotated[str, typer.Option(help="HOST:PORT of the server.")] = f"{LOOPBACK}:{DEFAULT_PORT}",
    service: Annotated[str, typer.Option(help="Service to ask about ('' = the server as a whole).")] = "",
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait.")] = 3.0,
    tls_ca: TlsCaOption = None,
) -> None:
    """Exit 0 if the server's gRPC health service says SERVING, 1 otherwise (for container health checks)."""
    from latentdex.service.health_check import check_health

    status = check_health(server, service, timeout, tls_ca.read_bytes() if tls_ca else None)
    typer.echo(status)
    if status != "SERVING":
        raise typer.Exit(1)
