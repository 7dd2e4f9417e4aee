"""`latentdex train`: train a VAE on an image folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from latentdex.errors import BadCheckpoint
from latentdex.service.cli.progress import progress_bar

if TYPE_CHECKING:
    import torch

    from latentdex.models.training import StepMetrics


def train(
    photos_dir: Annotated[Path, typer.Argument(help="Folder of images, searched recursively.")],
    out: Annotated[Path, typer.Option("--out", help="Model directory to write (and resume from).")],
    image_size: Annotated[int, typer.Option(help="Model input size: 32, 64, 128 or 256.")] = 64,
    latent_dim: Annotated[int, typer.Option(help="Latent dimension.")] = 128,
    base_channels: Annotated[int, typer.Option(help="Width of the second encoder level.")] = 32,
    encoder_stem: Annotated[
        str, typer.Option(help="full (first level at full resolution) or strided (at half: ~3x fewer FLOPs).")
    ] = "strided",
    decoder_upsampling: Annotated[
        str, typer.Option(help="transposed (stride-2 transposed convs) or nearest (upsample + conv).")
    ] = "nearest",
    epochs: Annotated[int, typer.Option(help="Passes over the training images.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Images per step.")] = 64,
    learning_rate: Annotated[float, typer.Option(help="AdamW peak learning rate.")] = 2e-3,
    beta: Annotated[
        float, typer.Option(help="KL weight against the per-image summed reconstruction error.")
    ] = 0.005,
    reconstruction: Annotated[str, typer.Option(help="Reconstruction loss: mse or l1_ssim.")] = "mse",
    invariance_weight: Annotated[
        float, typer.Option(help="Weight of the augmentation-invariance term (0 = off).")
    ] = 0.0,
    invariance_form: Annotated[
        str, typer.Option(help="mu_infonce (on mu) or head_ntxent (NT-Xent through a projection head).")
    ] = "head_ntxent",
    invariance_temperature: Annotated[float, typer.Option(help="Temperature of the invariance term.")] = 0.2,
    style_probability: Annotated[
        float, typer.Option(help="Share of altered views also re-rendered in another style.")
    ] = 0.0,
    black_corner_share: Annotated[
        float,
        typer.Option(
            help="Share of altered views rotated on their own canvas with black corners "
            "(as a straightened photo saved at its size is); the rest fill corners by reflection."
        ),
    ] = 0.0,
    adversarial_weight: Annotated[float, typer.Option(help="Weight of the patch-GAN term (0 = off).")] = 0.0,
    adversarial_warmup: Annotated[int, typer.Option(help="Steps before the GAN term starts.")] = 2000,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints and sheets.")] = 500,
    holdout_fraction: Annotated[float, typer.Option(help="Share of source images held out for PSNR.")] = 0.05,
    seed: Annotated[int, typer.Option(help="Seed for initialisation, order and augmentation.")] = 0,
    threads: Annotated[int, typer.Option(help="Torch threads (0 = all cores).")] = 0,
    device: Annotated[
        str,
        typer.Option(
            help="Where to train: cpu, cuda (or cuda:N), or auto (cuda when torch sees a GPU, else cpu). "
            "The seeded recipe is the same on either; the weights differ in the last bits."
        ),
    ] = "auto",
    init_from: Annotated[
        Path | None,
        typer.Option(help="Start from this model's weights and architecture (size options are ignored)."),
    ] = None,
    decoder_only: Annotated[
        bool,
        typer.Option(
            "--decoder-only",
            help="Train only the decoder, on decode(mu) of --init-from's frozen encoder: "
            "the same latents, sharper previews.",
        ),
    ] = False,
    encoder_only: Annotated[
        bool,
        typer.Option(
            "--encoder-only",
            help="Train only the encoder (and the invariance head) against --init-from's frozen decoder: "
            "new latents (stores re-encode), previews as that decoder draws them.",
        ),
    ] = False,
    head_from: Annotated[
        Path | None,
        typer.Option(
            help="Start the head_ntxent projection head from this training run's saved state "
            "(RUN/train_state) instead of at random.",
        ),
    ] = None,
    decoder_blocks: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="With --decoder-only: residual blocks per decoder level; the blocks added to "
            "--init-from's decoder start as identities, so training starts from its quality.",
        ),
    ] = None,
) -> None:
    """Train a VAE on PHOTOS_DIR; resumes from OUT's last checkpoint when run again."""
    import torch

    from latentdex.indexer.training_data import jpeg_round_trip, load_training_set
    from latentdex.models.checkpoint import load_model
    from latentdex.models.decoder_growth import deepen_decoder
    from latentdex.models.training import TrainConfig, load_projection_head
    from latentdex.models.training import train as train_model
    from latentdex.models.vae import VAEConfig

    if reconstruction not in ("mse", "l1_ssim"):
        raise typer.BadParameter("must be mse or l1_ssim", param_hint="--reconstruction")
    torch.set_num_threads(threads or os.cpu_count() or 1)
    train_device = training_device(device)
    if decoder_only and init_from is None:
        raise typer.BadParameter("trains a model's decoder: pass --init-from", param_hint="--decoder-only")
    if encoder_only and init_from is None:
        raise typer.BadParameter("trains a model's encoder: pass --init-from", param_hint="--encoder-only")
    if head_from is not None and (invariance_weight <= 0 or invariance_form != "head_ntxent" or decoder_only):
        raise typer.BadParameter(
            "starts the head of the head_ntxent term: needs --invariance-weight > 0 and "
            "--invariance-form head_ntxent, without --decoder-only",
            param_hint="--head-from",
        )
    if decoder_blocks is not None and not decoder_only:
        raise typer.BadParameter(
            "deepens a model's decoder: pass --decoder-only", param_hint="--decoder-blocks"
        )
    init, init_card = load_model(init_from) if init_from is not None else (None, None)
    if init is not None and decoder_blocks is not None:
        try:
            init = deepen_decoder(init, decoder_blocks)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--decoder-blocks") from exc
    # a decoder-only run keeps its starting model's latents: stores made with that model stay valid
    lineage = (init_card.model_id, *init_card.same_latents_as) if decoder_only and init_card else ()
    try:
        model_config = (
            init.config
            if init is not None
            else VAEConfig.for_size(
                image_size,
                latent_dim,
                base_channels,
                encoder_stem=encoder_stem,
                decoder_upsampling=decoder_upsampling,
            )
        )
        config = TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            beta=beta,
            reconstruction=reconstruction,  # type: ignore[arg-type]
            invariance_weight=invariance_weight,
            invariance_form=invariance_form,
            invariance_temperature=invariance_temperature,
            style_probability=style_probability,
            black_corner_share=black_corner_share,
            adversarial_weight=adversarial_weight,
            adversarial_warmup_steps=adversarial_warmup,
            checkpoint_every=checkpoint_every,
            seed=seed,
            decoder_only=decoder_only,
            encoder_only=encoder_only,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    try:
        head = load_projection_head(head_from, model_config.latent_dim) if head_from is not None else None
    except BadCheckpoint as exc:
        raise typer.BadParameter(str(exc), param_hint="--head-from") from exc
    with progress_bar("img") as bar:
        task = bar.add_task("decoding", total=None, status="")
        data = load_training_set(
            photos_dir,
            image_size,
            holdout_fraction=holdout_fraction,
            on_progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    typer.echo(f"{len(data.train)} training images, {len(data.holdout)} held out, {len(data.failed)} failed")
    typer.echo(f"training on {train_device}")
    for path, reason in data.failed[:20]:
        typer.echo(f"  failed: {path}: {reason}")
    with progress_bar("step") as bar:
        task = bar.add_task("training", total=None, status="")

        def on_step(metrics: StepMetrics) -> None:
            status = f"loss {metrics.loss:.1f} rec {metrics.reconstruction:.1f} kl {metrics.kl:.1f}"
            if config.invariance_weight:
                status += f" inv {metrics.invariance:.3f}"
            bar.update(task, completed=metrics.step, total=metrics.total_steps, status=status)

        result = train_model(
            data.train,
            data.holdout,
            out,
            model_config,
            config,
            jpeg=jpeg_round_trip,
            on_step=on_step,
            data_description=data.describe(Path(photos_dir)),
            init=init,
            init_head=head,
            same_latents_as=lineage,
            device=train_device,
        )
    psnr = f"{result.holdout_psnr:.2f} dB" if result.holdout_psnr is not None else "n/a (no held-out images)"
    typer.echo(f"model {result.model_id} written to {out}")
    typer.echo(f"held-out PSNR: {psnr} over {len(data.holdout)} images; {result.steps} steps")


def training_device(name: str) -> torch.device:
    """The device `--device` names; BadParameter for an unknown name or a GPU this machine lacks."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(name)
    except RuntimeError as exc:
        raise typer.BadParameter(f"{name!r} is not a device: use cpu, cuda, cuda:N or auto") from exc
    if chosen.type not in ("cpu", "cuda"):
        raise typer.BadParameter(f"{name!r}: training runs on cpu or cuda", param_hint="--device")
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0 or (chosen.index is not None and chosen.index >= count):
            raise typer.BadParameter(
                f"{name!r}: torch {torch.__version__} sees {count} CUDA device(s) on this machine",
                param_hint="--device",
            )
    return chosen
