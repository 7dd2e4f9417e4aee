"""`latentdex demo`: the guided tour on a generated sample collection with the shipped model."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from latentdex.service.cli.model_commands import ModelOption
from latentdex.service.contact_sheet import SheetTile, contact_sheet
from latentdex.service.server_config import ServerConfig
from latentdex.service.strips import write_frames

if TYPE_CHECKING:
    from latentdex.models.inference import LatentCodec


def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the sample collection, store and sheets.")
    ] = Path("demo-out"),
    model: ModelOption = None,
    serve: Annotated[
        bool, typer.Option(help="Then serve the store with the web app until Ctrl-C (`make demo` does).")
    ] = False,
    http_port: Annotated[
        int, typer.Option(min=0, max=65535, help="The web app's port with --serve (0: a free one).")
    ] = 8080,
) -> None:
    """Index a generated sample collection, serve it, query it over gRPC, and write sheets (shipped model);
    with --serve, then open it in a browser."""
    from latentdex.indexer.pipeline import index_folder
    from latentdex.models.inference import LatentCodec
    from latentdex.service.reconstruction import reconstruct_files
    from latentdex.service.sample_collection import write_sample_collection

    samples = write_sample_collection(out / "samples")
    typer.echo(f"1. sample collection: {len(samples)} images in {out / 'samples'}")
    codec = LatentCodec.load(model)
    store_dir = out / "store"
    shutil.rmtree(store_dir, ignore_errors=True)
    report = index_folder(out / "samples", store_dir, codec)
    typer.echo(
        f"2. indexed into {store_dir}: {report.counts.new} new, {report.counts.failed} failed "
        f"({report.images_per_second:.0f} images/s, model {codec.model_id})"
    )
    contact = out / "contact-sheet.png"
    _query_over_grpc(codec, store_dir, samples[0], contact)
    sheet = out / "reconstruction.png"
    reconstruction = reconstruct_files(samples, sheet, model)
    mean_psnr = sum(reconstruction.psnr_by_path.values()) / len(reconstruction.psnr_by_path)
    typer.echo(f"5. mean reconstruction PSNR {mean_psnr:.2f} dB over {len(samples)} images")
    typer.echo(f"   reconstruction sheet: {sheet} (top rows: originals, bottom rows: decoded latents)")
    if serve:
        _serve_web_app(codec, store_dir, http_port)


def _serve_web_app(codec: LatentCodec, store_dir: Path, http_port: int) -> None:
    """Serve the demo store (gRPC and the web app, loopback) until Ctrl-C."""
    from latentdex.service.live_store import LiveStore
    from latentdex.service.queries import QueryEngine
    from latentdex.service.server import start_server

    live = LiveStore(store_dir)
    running = start_server(QueryEngine(codec, live), ServerConfig(port=0, http_port=http_port))
    typer.echo(f"6. web app: http://127.0.0.1:{running.http_port}/  (gRPC on 127.0.0.1:{running.port})")
    typer.echo(
        "   open it in a browser: drop a photo to search, browse the map, walk the latent space; Ctrl-C stops"
    )
    try:
        running.wait()
    except KeyboardInterrupt:
        typer.echo("stopped")
    finally:
        running.stop(1.0)
        live.close()


def _query_over_grpc(codec: LatentCodec, store_dir: Path, query: Path, sheet: Path, k: int = 7) -> None:
    """Serve the store on a free loopback port, query it with the client, write a contact sheet."""
    from latentdex.service.client import FrameOptions, QueryOptions, connect
    from latentdex.service.live_store import LiveStore
    from latentdex.service.queries import QueryEngine
    from latentdex.service.server import start_server

    live = LiveStore(store_dir)
    running = start_server(QueryEngine(codec, live), ServerConfig(port=0))
    try:
        with connect(f"127.0.0.1:{running.port}") as client:
            info = client.info()
            typer.echo(f"3. serving on 127.0.0.1:{running.port}: {info.image_count} images, {info.model_id}")
            options = QueryOptions(previews=True, query_preview=True, thumbnails=True, preview_size=128)
            result = client.query_by_image(query, k, options)
            walk = client.interpolate(
                result.matches[0].id,
                result.matches[-1].id,
                8,
                frames=FrameOptions(size=128, nearest_k=1, thumbnails=True),
            )
    finally:
        running.stop(1.0)
        live.close()
    typer.echo(
        f"4. QueryByImage {query.name} over gRPC ({result.timings['total'] * 1000:.0f} ms on the server):"
    )
    for rank, match in enumerate(result.matches, 1):
        typer.echo(f"     {rank}. id {match.id:3d}  distance {match.distance:.3f}  {match.path}")
    tiles = [
        SheetTile(
            query.read_bytes(),
            result.query_preview.data if result.query_preview else None,
            f"query\n{query.name}",
        )
    ]
    tiles += [
        SheetTile(
            m.thumbnail.data if m.thumbnail else None,
            m.preview.data if m.preview else None,
            f"#{rank}  d={m.distance:.3f}\n{m.path}",
        )
        for rank, m in enumerate(result.matches, 1)
    ]
    contact_sheet(tiles).save(sheet)
    typer.echo(f"   contact sheet: {sheet} (per match: original | decoded latent)")
    strip = write_frames(walk, sheet.with_name("interpolation.png"), [f"t = {f.position:.2f}" for f in walk])
    stops = " -> ".join(dict.fromkeys(f.nearest[0].path for f in walk if f.nearest))
    typer.echo(f"   Interpolate {result.matches[0].path} -> {result.matches[-1].path}, 8 steps: {strip}")
    typer.echo(f"   the nearest photos along the path: {stops}")
