"""The training loop: seeded, resumable from its last checkpoint, writing a sheet at every checkpoint.

Input is tensors only: uint8 images (N, 3, H, W) with H, W >= the model's image size (random crops are
taken from them), split by the caller into training and held-out sets.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from latentdex.atomic_files import atomic_output, write_text_atomic
from latentdex.errors import BadCheckpoint
from latentdex.models import losses
from latentdex.models.augment import JpegRecompressor, altered_copies, random_crops, style_changes
from latentdex.models.checkpoint import compute_model_id, save_model, state_digest
from latentdex.models.sheets import training_sheet
from latentdex.models.vae import VAE, VAEConfig

STATE_DIR = "train_state"
SHEETS_DIR = "sheets"
INVARIANCE_FORMS = ("mu_infonce", "head_ntxent")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation hyper-parameters. `beta` weighs KL nats against the per-image summed error."""

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 200
    beta: float = 0.005
    reconstruction: losses.ReconstructionKind = "mse"
    invariance_weight: float = 0.0
    invariance_temperature: float = 0.1
    # "mu_infonce": InfoNCE on mu between the crop and one altered copy. "head_ntxent": SimCLR's NT-Xent
    # between two altered copies, through a 2-layer projection head over mu (`losses.ProjectionHead`).
    invariance_form: str = "mu_infonce"
    # Share of altered copies also re-rendered in another style (`augment.style_changes`).
    style_probability: float = 0.0
    # Share of altered copies rotated on their own canvas with black corners (`augment.altered_copies`).
    black_corner_share: float = 0.0
    # Train the decoder alone, on decode(mu) of a frozen encoder (start from a trained model: `train`'s
    # `init`): the latents, and so every store built with them, stay as they are; previews get sharper.
    decoder_only: bool = False
    # Train the encoder (and the projection head) against a trained model's frozen decoder: the latents
    # move, so stores re-encode, but decode(mu) stays what the decoder was trained to show.
    encoder_only: bool = False
    adversarial_weight: float = 0.0
    adversarial_warmup_steps: int = 2000
    checkpoint_every: int = 500
    seed: int = 0
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.invariance_form not in INVARIANCE_FORMS:
            raise ValueError(
                f"invariance_form must be one of {INVARIANCE_FORMS}, got {self.invariance_form!r}"
            )
        if not 0 <= self.style_probability <= 1:
            raise ValueError(f"style_probability must be in [0, 1], got {self.style_probability}")
        if not 0 <= self.black_corner_share <= 1:
            raise ValueError(f"black_corner_share must be in [0, 1], got {self.black_corner_share}")
        if self.encoder_only and self.decoder_only:
            raise ValueError("encoder_only and decoder_only exclude each other")
        if self.encoder_only and self.adversarial_weight > 0:
            raise ValueError("encoder_only keeps the decoder frozen: no adversarial term to train")


@dataclass
class StepMetrics:
    """What one optimisation step measured; the progress callback receives it."""

    step: int
    total_steps: int
    epoch: int
    loss: float
    reconstruction: float
    kl: float
    invariance: float = 0.0
    adversarial: float = 0.0
    discriminator: float = 0.0


@dataclass
class TrainResult:
    """The outcome of a `train` call."""

    model: VAE
    model_id: str
    steps: int
    holdout_psnr: float | None
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


ProgressCallback = Callable[[StepMetrics], None]


def train(
    train_images: torch.Tensor,
    holdout_images: torch.Tensor,
    out_dir: str | Path,
    model_config: VAEConfig,
    config: TrainConfig,
    *,
    jpeg: JpegRecompressor | None = None,
    on_step: ProgressCallback | None = None,
    data_description: dict[str, Any] | None = None,
    init: VAE | None = None,
    init_head: losses.ProjectionHead | None = None,
    same_latents_as: Sequence[str] = (),
    device: str | torch.device = "cpu",
) -> TrainResult:
    """Train a VAE on `train_images` into `out_dir`, resuming from `out_dir`'s last checkpoint if any.

    `out_dir` receives the model (model.safetensors + config.json) at every checkpoint, the optimiser
    state in train_state/, and a PNG sheet of reconstructions, samples and an interpolation in sheets/.
    `init`: start from this model's weights (its config must be `model_config`); `config.decoder_only`
    and `config.encoder_only` need one. `init_head`: start the projection head of the `head_ntxent` term
    from these weights (`load_projection_head`) instead of at random. `same_latents_as`: for a
    decoder-only run, the starting model's id and its own `same_latents_as`, recorded with the model so
    that stores made with them stay valid (`ModelCard`). `device`: where the model, the images and every
    step live ("cuda" for a GPU); weights start and random numbers are drawn on the CPU, so the run follows
    the same seeded recipe on any device (its arithmetic, and so its weights, differ in the last bits).
    The model comes back on the CPU.
    Raises `BadCheckpoint` if `out_dir` holds a run with a different model, training config, starting
    model or starting head; ValueError for `decoder_only` or `encoder_only` without `init`,
    `same_latents_as` without `decoder_only`, or `init_head` for a config without a head_ntxent term.
    """
    if (config.decoder_only or config.encoder_only) and init is None:
        raise ValueError("decoder_only and encoder_only training start from a trained model: pass init")
    if same_latents_as and not config.decoder_only:
        raise ValueError("only a decoder-only run keeps its starting model's latents")
    if init is not None and init.config != model_config:
        raise ValueError("init's config differs from model_config")
    contrastive = config.invariance_weight > 0 and not config.decoder_only
    trains_head = contrastive and config.invariance_form == "head_ntxent"
    if init_head is not None and not trains_head:
        raise ValueError("init_head starts the head_ntxent term's head; this config trains none")
    _check_images(train_images, model_config.image_size, "training")
    if len(holdout_images):
        _check_images(holdout_images, model_config.image_size, "held-out")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    model = VAE(model_config)
    if init is not None:
        model.load_state_dict(init.state_dict())
    head = losses.ProjectionHead(model_config.latent_dim) if trains_head else None
    if head is not None and init_head is not None:
        head.load_state_dict(init_head.state_dict())
    device = torch.device(device)
    model.to(device)
    if head is not None:
        head.to(device)
    train_images, holdout_images = train_images.to(device), holdout_images.to(device)
    head_parameters = list(head.parameters()) if head is not None else []
    if config.decoder_only:
        model.encoder.requires_grad_(False)
        trained = list(model.decoder.parameters())
    elif config.encoder_only:
        model.decoder.requires_grad_(False)
        trained = list(model.encoder.parameters()) + head_parameters
    else:
        trained = list(model.parameters()) + head_parameters
    optimizer = torch.optim.AdamW(trained, lr=config.learning_rate, weight_decay=config.weight_decay)
    discriminator = losses.PatchDiscriminator().to(device) if config.adversarial_weight > 0 else None
    disc_optimizer = (
        torch.optim.AdamW(discriminator.parameters(), lr=config.learning_rate * 0.5, betas=(0.5, 0.9))
        if discriminator is not None
        else None
    )
    steps_per_epoch = max(1, len(train_images) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_cosine(config.warmup_steps, total_steps))
    state = _TrainState(out / STATE_DIR, model_config, config, init, init_head)
    step, history = state.restore(model, head, optimizer, schedule, discriminator, disc_optimizer)
    started = time.perf_counter()
    model.train()
    while step < total_steps:
        epoch, offset = divmod(step, steps_per_epoch)
        order = torch.randperm(len(train_images), generator=_generator(config.seed, 1, epoch))
        batch_gen = _generator(config.seed, 2, step)
        batch_ids = order[offset * config.batch_size : (offset + 1) * config.batch_size]
        images = random_crops(train_images[batch_ids], model_config.image_size, batch_gen)
        metrics = _train_step(
            model, head, optimizer, discriminator, disc_optimizer, images, config, step, batch_gen, jpeg
        )
        schedule.step()
        step += 1
        metrics.step, metrics.total_steps, metrics.epoch = step, total_steps, epoch
        history.append({k: v for k, v in asdict(metrics).items() if isinstance(v, float)} | {"step": step})
        if on_step is not None:
            on_step(metrics)
        if step % config.checkpoint_every == 0 or step == total_steps:
            _checkpoint(
                model,
                out,
                holdout_images,
                train_images,
                config,
                step,
                data_description,
                None,
                same_latents_as,
            )
            state.save(step, history, model, head, optimizer, schedule, discriminator, disc_optimizer)
    model.eval()
    holdout = holdout_psnr(model, holdout_images) if len(holdout_images) else None
    card = _checkpoint(
        model, out, holdout_images, train_images, config, step, data_description, holdout, same_latents_as
    )
    return TrainResult(
        model=model.cpu(),
        model_id=card.model_id,
        steps=step,
        holdout_psnr=holdout,
        seconds=time.perf_counter() - started,
        history=history,
    )


def _train_step(
    model: VAE,
    head: losses.ProjectionHead | None,
    optimizer: torch.optim.Optimizer,
    discriminator: losses.PatchDiscriminator | None,
    disc_optimizer: torch.optim.Optimizer | None,
    images: torch.Tensor,
    config: TrainConfig,
    step: int,
    generator: torch.Generator,
    jpeg: JpegRecompressor | None,
) -> StepMetrics:
    if config.decoder_only:
        # the decoder alone on decode(mu): what previews show, from latents that do not move
        with torch.no_grad():
            mu, _ = model.encoder(images)
        reconstruction = model.decoder(mu)
        loss = recon = losses.reconstruction_loss(reconstruction, images, config.reconstruction)
        metrics = StepMetrics(0, 0, 0, 0.0, recon.item(), 0.0)
    else:
        reconstruction, posterior = model(images, generator)
        recon = losses.reconstruction_loss(reconstruction, images, config.reconstruction)
        kl = posterior.kl().mean()
        loss = recon + config.beta * kl
        metrics = StepMetrics(0, 0, 0, 0.0, recon.item(), kl.item())
        if config.invariance_weight > 0:
            invariance = _invariance(model, head, images, posterior.mu, config, generator, jpeg)
            loss = loss + config.invariance_weight * invariance
            metrics.invariance = invariance.item()
    adversarial_on = discriminator is not None and step >= config.adversarial_warmup_steps
    if adversarial_on:
        assert discriminator is not None
        discriminator.requires_grad_(False)
        adversarial = losses.generator_adversarial_loss(discriminator(reconstruction))
        loss = loss + config.adversarial_weight * adversarial
        metrics.adversarial = adversarial.item()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for group in optimizer.param_groups for p in group["params"]]
    torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
    optimizer.step()
    if adversarial_on:
        assert discriminator is not None and disc_optimizer is not None
        discriminator.requires_grad_(True)
        disc_loss = losses.discriminator_loss(discriminator(images), discriminator(reconstruction.detach()))
        disc_optimizer.zero_grad(set_to_none=True)
        disc_loss.backward()
        disc_optimizer.step()
        metrics.discriminator = disc_loss.item()
    metrics.loss = loss.item()
    return metrics


def _invariance(
    model: VAE,
    head: losses.ProjectionHead | None,
    images: torch.Tensor,
    mu: torch.Tensor,
    config: TrainConfig,
    generator: torch.Generator,
    jpeg: JpegRecompressor | None,
) -> torch.Tensor:
    def view() -> torch.Tensor:
        copies = altered_copies(images, generator, jpeg=jpeg, black_corner_share=config.black_corner_share)
        if config.style_probability > 0:
            copies = style_changes(copies, generator, config.style_probability)
        return copies

    if head is None:
        copy_mu, _ = model.encoder(view())
        return losses.invariance_loss(mu, copy_mu, config.invariance_temperature)
    views_mu, _ = model.encoder(torch.cat([view(), view()]))
    projected = head(views_mu)
    first, second = projected.chunk(2)
    return losses.nt_xent(first, second, config.invariance_temperature)


@torch.inference_mode()
def holdout_psnr(model: VAE, images: torch.Tensor, batch_size: int = 256) -> float:
    """Mean PSNR (dB) of decode(mu) against centre crops of uint8 `images`."""
    was_training = model.training
    model.eval()
    size = model.config.image_size
    scores = []
    for start in range(0, len(images), batch_size):
        batch = center_crops(images[start : start + batch_size], size)
        scores.append(losses.psnr(model.decode(model.encode(batch).mode()), batch))
    model.train(was_training)
    return float(torch.cat(scores).mean())


def center_crops(images: torch.Tensor, size: int) -> torch.Tensor:
    """Centre size x size crops of uint8 (N, 3, H, W) images as float [0, 1]."""
    height, width = images.shape[-2:]
    top, left = (height - size) // 2, (width - size) // 2
    return images[:, :, top : top + size, left : left + size].float().div(255)


def _checkpoint(
    model: VAE,
    out: Path,
    holdout_images: torch.Tensor,
    train_images: torch.Tensor,
    config: TrainConfig,
    step: int,
    data_description: dict[str, Any] | None,
    psnr: float | None,
    same_latents_as: Sequence[str] = (),
):
    was_training = model.training
    model.eval()
    sheet_source = holdout_images if len(holdout_images) >= 2 else train_images
    training_sheet(model, center_crops(sheet_source[:8], model.config.image_size), seed=config.seed).save(
        _sheet_path(out, step)
    )
    info: dict[str, Any] = {"steps": step, "train_config": asdict(config), "train_images": len(train_images)}
    info["device"] = train_images.device.type
    info["holdout_images"] = len(holdout_images)
    if psnr is not None:
        info["holdout_psnr_db"] = round(psnr, 3)
    if data_description:
        info["data"] = data_description
    card = save_model(model, out, training=info, same_latents_as=same_latents_as)
    model.train(was_training)
    return card


def _sheet_path(out: Path, step: int) -> Path:
    (out / SHEETS_DIR).mkdir(exist_ok=True)
    return out / SHEETS_DIR / f"step-{step:07d}.png"


class _TrainState:
    """Optimiser, scheduler and history saved beside the model so a killed run resumes where it stopped."""

    def __init__(
        self,
        directory: Path,
        model_config: VAEConfig,
        config: TrainConfig,
        init: VAE | None = None,
        init_head: losses.ProjectionHead | None = None,
    ) -> None:
        self.directory = directory
        self.signature = {"model": json.loads(model_config.to_json()), "train": asdict(config)}
        if init is not None:  # the starting weights, by content: another start is another run
            self.signature["init"] = compute_model_id(init.config, init.state_dict())
        if init_head is not None:
            self.signature["init_head"] = state_digest(init_head.state_dict())

    def restore(self, model, head, optimizer, schedule, discriminator, disc_optimizer) -> tuple[int, list]:
        meta_path = self.directory / "state.json"
        if not meta_path.exists():
            return 0, []
        meta = json.loads(meta_path.read_text())
        if _with_defaults(meta.get("signature")) != _with_defaults(self.signature):
            raise BadCheckpoint(
                f"{self.directory.parent} holds a run with different settings; "
                "use another --out or the same settings"
            )
        tensors = load_file(str(self.directory / "state.safetensors"))
        model.load_state_dict(_prefixed(tensors, "model."))
        if head is not None:
            head.load_state_dict(_prefixed(tensors, "head."))
        optimizer.load_state_dict(_unflatten_optimizer(tensors, "opt.", meta["optimizer_groups"]))
        schedule.load_state_dict(meta["schedule"])
        if discriminator is not None:
            discriminator.load_state_dict(_prefixed(tensors, "disc."))
            disc_optimizer.load_state_dict(
                _unflatten_optimizer(tensors, "dopt.", meta["disc_optimizer_groups"])
            )
        return int(meta["step"]), list(meta.get("history", []))

    def save(self, step, history, model, head, optimizer, schedule, discriminator, disc_optimizer) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"model.{k}": _host_copy(v) for k, v in model.state_dict().items()}
        if head is not None:
            tensors |= {f"head.{k}": _host_copy(v) for k, v in head.state_dict().items()}
        opt_tensors, opt_groups = _flatten_optimizer(optimizer, "opt.")
        tensors |= opt_tensors
        meta: dict[str, Any] = {
            "signature": self.signature,
            "step": step,
            "optimizer_groups": opt_groups,
            "schedule": schedule.state_dict(),
            "history": history,
        }
        if discriminator is not None:
            tensors |= {f"disc.{k}": _host_copy(v) for k, v in discriminator.state_dict().items()}
            disc_tensors, meta["disc_optimizer_groups"] = _flatten_optimizer(disc_optimizer, "dopt.")
            tensors |= disc_tensors
        with atomic_output(self.directory / "state.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
        write_text_atomic(self.directory / "state.json", json.dumps(meta))


def load_projection_head(run_dir: str | os.PathLike[str], latent_dim: int) -> losses.ProjectionHead:
    """The projection head a `head_ntxent` run left in its training state (RUN/train_state).

    Raises `BadCheckpoint` when the run has no saved state, or its state holds no head of that width.
    """
    path = Path(run_dir) / STATE_DIR / "state.safetensors"
    if not path.is_file():
        raise BadCheckpoint(f"{run_dir} has no training state ({path} is missing)")
    head_weights = _prefixed(load_file(str(path)), "head.")
    if not head_weights:
        raise BadCheckpoint(f"{run_dir}'s training state holds no projection head (not a head_ntxent run)")
    head = losses.ProjectionHead(latent_dim)
    try:
        head.load_state_dict(head_weights)
    except RuntimeError as exc:
        raise BadCheckpoint(f"{run_dir}'s projection head does not fit a {latent_dim}-d latent") from exc
    return head


def _with_defaults(signature: Any) -> Any:
    """A run's signature with every TrainConfig field present: a field added since a run started, at its
    default, is the same setting the run had (so runs continue across versions of this module)."""
    if not isinstance(signature, dict) or not isinstance(signature.get("train"), dict):
        return signature
    return {**signature, "train": asdict(TrainConfig()) | signature["train"]}


def _flatten_optimizer(optimizer: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], list]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"{prefix}{index}.{key}"] = _host_copy(tensor)
    return tensors, state["param_groups"]


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], prefix: str, groups: list) -> dict[str, Any]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        if name.startswith(prefix):
            index, key = name[len(prefix) :].split(".", 1)
            state.setdefault(int(index), {})[key] = tensor
    return {"state": state, "param_groups": groups}


def _host_copy(tensor: torch.Tensor) -> torch.Tensor:
    """A detached copy in CPU memory, where safetensors writes from."""
    return tensor.detach().to("cpu", copy=True)


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _generator(seed: int, stream: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + stream * 7_919 * 1_000_000 + index)


def _warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _check_images(images: torch.Tensor, size: int, name: str) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(
            f"{name} images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}"
        )
    if images.shape[2] < size or images.shape[3] < size:
        raise ValueError(f"{name} images are {tuple(images.shape[2:])}, smaller than the model's {size}")
    if len(images) == 0:
        raise ValueError(f"no {name} images")
