"""`latentdex reconstruct` and `latentdex model-info`: look at what a model does to images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal

import typer

ModelOption = Annotated[
    Path | None, typer.Option("--model", help="Model directory (default: the shipped model).")
]
PrecisionOption = Annotated[
    Literal["auto", "fp32", "bf16"],
    typer.Option(
        help="Encoder arithmetic: auto (bf16 on a CPU with AMX or AVX512-BF16, else fp32), fp32 or bf16."
    ),
]


def reconstruct(
    images: Annotated[list[Path], typer.Argument(help="Image files to encode and decode.")],
    out: Annotated[Path, typer.Option("--out", help="PNG sheet to write: originals above reconstructions.")],
    model: ModelOption = None,
) -> None:
    """Encode IMAGES with the VAE, decode their latents, and write a side-by-side sheet."""
    from latentdex.service.reconstruction import reconstruct_files

    report = reconstruct_files(images, out, model)
    for path, psnr in report.psnr_by_path.items():
        typer.echo(f"{psnr:6.2f} dB  {path}")
    for path, reason in report.failed.items():
        typer.echo(f"failed: {path}: {reason}", err=True)
    typer.echo(f"sheet written to {out} (model {report.model_id})")


def model_info(model: ModelOption = None) -> None:
    """Print a model directory's id, architecture and training facts as JSON."""
    from latentdex.models.checkpoint import load_model

    vae, card = load_model(model)
    parameters = sum(p.numel() for p in vae.parameters())
    document = {
        "model_id": card.model_id,
        "config": json.loads(card.config.to_json()),
        "parameters": parameters,
        "training": {k: v for k, v in card.training.items() if k != "train_config"},
    }
    typer.echo(json.dumps(document, indent=2))
