"""`latentdex demo`: the guided tour on a generated sample collection with the shipped model."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Annotated

import typer

from indexer.load import load_for_model
from indexer.pipeline import index_folder
from indexer.store import LatentStore
from models.inference import LatentCodec
from service.cli.model_commands import ModelOption
from service.reconstruction import reconstruct_files
from service.sample_collection import write_sample_collection


def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the sample collection, store and sheets.")
    ] = Path("demo-out"),
    model: ModelOption = None,
) -> None:
    """Write a sample collection, index it, query it, and write a reconstruction sheet (shipped model)."""
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
    query = samples[0]
    latent = codec.encode(load_for_model(query, codec.image_size)[None])
    with LatentStore.open(store_dir, read_only=True) as store:
        matches = store.search(latent, k=3)[0]
        records = store.get([m.id for m in matches])
    typer.echo(f"3. nearest to {query.name}:")
    for match, record in zip(matches, records, strict=True):
        typer.echo(f"     id {match.id:3d}  similarity {match.similarity:.3f}  {record.path}")
    sheet = out / "reconstruction.png"
    reconstruction = reconstruct_files(samples, sheet, model)
    mean_psnr = sum(reconstruction.psnr_by_path.values()) / len(reconstruction.psnr_by_path)
    typer.echo(f"4. mean reconstruction PSNR {mean_psnr:.2f} dB over {len(samples)} images")
    typer.echo(f"   reconstruction sheet: {sheet} (top rows: originals, bottom rows: decoded latents)")
