"""`latentdex demo`: the guided tour on a generated sample collection with the shipped model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from service.reconstruction import reconstruct_files
from service.sample_collection import write_sample_collection


def demo(
    out: Annotated[
        Path, typer.Option("--out", help="Folder for the sample collection and the sheets.")
    ] = Path("demo-out"),
) -> None:
    """Write a sample collection, encode and decode it with the shipped model, and write a sheet."""
    samples = write_sample_collection(out / "samples")
    typer.echo(f"sample collection: {len(samples)} images in {out / 'samples'}")
    sheet = out / "reconstruction.png"
    report = reconstruct_files(samples, sheet)
    mean_psnr = sum(report.psnr_by_path.values()) / len(report.psnr_by_path)
    typer.echo(
        f"model {report.model_id}: mean reconstruction PSNR {mean_psnr:.2f} dB over {len(samples)} images"
    )
    typer.echo(f"reconstruction sheet: {sheet} (top rows: originals, bottom rows: decoded latents)")
