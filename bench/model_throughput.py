"""Model speed: encode/decode images/s, achieved GFLOP/s against the raw matmul rate, and training steps/s.

Every speed is measured next to `bench.machine.matmul_gflops` on the same device in the same run, and
reported both absolute and as a ratio, because the figures move with whatever else the machine runs.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from bench.machine import Timing, device_sync, matmul_gflops, time_call, time_interleaved
from bench.report import table
from latentdex.indexer.training_data import jpeg_round_trip
from latentdex.models.checkpoint import load_model
from latentdex.models.inference import cpu_has_fast_bf16
from latentdex.models.losses import ProjectionHead
from latentdex.models.training import TrainConfig, _train_step
from latentdex.models.vae import VAE

NAME = "model_throughput"
INVARIANCE_WEIGHT = 100.0  # the default model's setting (Makefile: default-model), NT-Xent through a head


@dataclass(frozen=True)
class ThroughputSizes:
    """How much to measure: batch sizes, timed repeats and calls per timed sample at batch 1."""

    batch_sizes: tuple[int, ...] = (1, 64)
    warmup: int = 2
    repeat: int = 7
    batch1_calls: int = 20
    train_batch: int = 64
    train_warmup: int = 1
    train_repeat: int = 5


FULL = ThroughputSizes()
QUICK = ThroughputSizes(warmup=1, repeat=3, batch1_calls=8, train_warmup=0, train_repeat=2)


def run(model_dir: str | os.PathLike[str] | None, quick: bool = False) -> dict[str, Any]:
    """Measure on the CPU, and on CUDA when available; returns the JSON-ready result."""
    model, card = load_model(model_dir)
    sizes = QUICK if quick else FULL
    result: dict[str, Any] = {
        "model_id": card.model_id,
        "model_config": asdict(card.config),
        "sizes": asdict(sizes),
        "cpu": measure_device(model, torch.device("cpu"), sizes),
    }
    if torch.cuda.is_available():
        try:
            result["gpu"] = measure_device(model, torch.device("cuda"), sizes)
        except Exception as exc:  # keep the CPU figures whatever the GPU run does
            result["gpu"] = None
            result["gpu_reason"] = f"measurement failed: {type(exc).__name__}: {exc}"
    else:
        result["gpu"] = None
        result["gpu_reason"] = "torch.cuda.is_available() is False (no CUDA device or a CPU-only torch build)"
    return result


def measure_device(model: VAE, device: torch.device, sizes: ThroughputSizes) -> dict[str, Any]:
    """All throughput figures for one device, each speed beside the device's matmul baseline."""
    model = copy.deepcopy(model).to(device).eval()
    sync = device_sync(device)
    matmul_size = 1024 if device.type == "cpu" else 4096
    baseline: dict[str, Any] = {"start": matmul_gflops(device, size=matmul_size)}
    peak = baseline["start"]["gflops_best"]
    size, latent_dim = model.config.image_size, model.config.latent_dim
    generator = torch.Generator().manual_seed(0)
    flops = {
        "encode_per_image": count_flops(lambda: model.encode(torch.rand(1, 3, size, size, device=device))),
        "decode_per_image": count_flops(lambda: model.decode(torch.randn(1, latent_dim, device=device))),
    }
    out: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "matmul_baseline": baseline,
        "flops": flops,
        "note": "FLOPs: matmuls and convolutions only (FlopCounterMode); norms and activations are extra",
    }
    if device.type == "cuda":  # convolutions may run in TF32 while the fp32 matmul baseline does not
        out["allow_tf32"] = {
            "matmul": torch.backends.cuda.matmul.allow_tf32,
            "cudnn": torch.backends.cudnn.allow_tf32,
        }
    inference: dict[str, Any] = {}
    for batch in sizes.batch_sizes:
        images = smooth_images(batch, size, generator).to(device)
        latents = torch.randn(batch, latent_dim, generator=generator).to(device)
        for op, fn, per_image in (
            ("encode", lambda x=images: model.encode(x), flops["encode_per_image"]),
            ("decode", lambda z=latents: model.decode(z), flops["decode_per_image"]),
        ):
            inference[f"{op}_b{batch}"] = _inference_rate(fn, batch, per_image, peak, sizes, sync)
    out["inference"] = inference
    out["channels_last"] = _channels_last(model, sizes, generator, flops["encode_per_image"], peak, sync)
    out["bf16"] = _bf16(model, sizes, generator, flops["encode_per_image"], peak, sync)
    out["training"] = _training_rates(model, sizes, device, peak)
    plain, invariance = out["training"]["plain"], out["training"]["invariance"]
    if "steps_per_s" in plain and "steps_per_s" in invariance:
        out["training_speed_invariance_over_plain"] = invariance["steps_per_s"] / plain["steps_per_s"]
    # Measured again at the end: if the machine got busier or quieter meanwhile, `drift` shows it.
    baseline["end"] = matmul_gflops(device, size=matmul_size)
    baseline["drift_end_over_start"] = baseline["end"]["gflops_best"] / baseline["start"]["gflops_best"]
    baseline["size"] = matmul_size
    baseline["note"] = "ratios divide by the start measurement's best rate (gflops_best)"
    baseline["gflops_best"] = peak
    return out


def count_flops(fn: Callable[[], object], inference: bool = True) -> int:
    """FLOPs of one call of `fn` as counted by `torch.utils.flop_counter.FlopCounterMode`."""
    counter = FlopCounterMode(display=False)
    if inference:
        with torch.inference_mode(), counter:
            fn()
    else:
        with counter:
            fn()
    return int(counter.get_total_flops())


def smooth_images(n: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """Photo-like float [0, 1] test images: upsampled coarse noise plus a little grain (JPEG-realistic)."""
    coarse = torch.rand(n, 3, 8, 8, generator=generator)
    images = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    images += 0.03 * torch.randn(n, 3, size, size, generator=generator)
    return images.clamp_(0, 1)


def _inference_rate(
    fn: Callable[[], object],
    batch: int,
    flops_per_image: int,
    peak_gflops: float,
    sizes: ThroughputSizes,
    sync: Callable[[], None],
) -> dict[str, Any]:
    calls = sizes.batch1_calls if batch == 1 else 1
    timing = time_call(_looped(fn, calls), warmup=sizes.warmup, repeat=sizes.repeat, sync=sync)
    return _rate(timing, batch, calls, flops_per_image, peak_gflops)


def _looped(fn: Callable[[], object], calls: int) -> Callable[[], None]:
    def timed() -> None:
        with torch.inference_mode():
            for _ in range(calls):
                fn()

    return timed


def _rate(timing: Timing, batch: int, calls: int, flops_per_image: int, peak_gflops: float) -> dict[str, Any]:
    images_per_s = batch * calls / timing.median
    achieved = images_per_s * flops_per_image / 1e9
    return {
        "batch": batch,
        "images_per_s": images_per_s,
        "ms_per_batch": 1000 * timing.median / calls,
        "achieved_gflops": achieved,
        "ratio_to_matmul": achieved / peak_gflops,
        "timing": timing.to_dict(),
    }


def _channels_last(
    model: VAE,
    sizes: ThroughputSizes,
    generator: torch.Generator,
    flops_per_image: int,
    peak: float,
    sync: Callable[[], None],
) -> dict[str, Any]:
    """Encode at the largest batch in default (NCHW) and channels_last layout, timed interleaved."""
    batch = max(sizes.batch_sizes)
    device = next(model.parameters()).device
    size = model.config.image_size
    images = smooth_images(batch, size, generator).to(device)
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
    images_cl = images.contiguous(memory_format=torch.channels_last)
    calls = {"default": lambda: model.encode(images), "channels_last": lambda: fast.encode(images_cl)}
    rates = _paired_rates(calls, batch, sizes, flops_per_image, peak, sync)
    return {
        "op": f"encode_b{batch}",
        **rates,
        "speedup_channels_last": rates["channels_last"]["images_per_s"] / rates["default"]["images_per_s"],
    }


def _bf16(
    model: VAE,
    sizes: ThroughputSizes,
    generator: torch.Generator,
    flops_per_image: int,
    peak: float,
    sync: Callable[[], None],
) -> dict[str, Any]:
    """channels_last encode at the largest batch in fp32 and under bf16 autocast (what `LatentCodec`
    precision "bf16" runs), timed interleaved, and how far the bf16 latents are from the fp32 ones."""
    batch = max(sizes.batch_sizes)
    device = next(model.parameters()).device
    fast = copy.deepcopy(model).to(memory_format=torch.channels_last)
    size = model.config.image_size
    images = smooth_images(batch, size, generator).to(device).contiguous(memory_format=torch.channels_last)

    def encode_bf16() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return fast.encode(images).mu.float()

    with torch.inference_mode():
        exact, approx = fast.encode(images).mu, encode_bf16()
    cosine = F.cosine_similarity(exact, approx, dim=1)
    calls = {"fp32": lambda: fast.encode(images), "bf16": encode_bf16}
    rates = _paired_rates(calls, batch, sizes, flops_per_image, peak, sync)
    return {
        "op": f"encode_b{batch}",
        "hardware_bf16": bool(device.type == "cuda" or cpu_has_fast_bf16()),
        **rates,
        "speedup_bf16": rates["bf16"]["images_per_s"] / rates["fp32"]["images_per_s"],
        "latent_relative_error": float((approx - exact).norm() / exact.norm()),
        "latent_cosine_min": float(cosine.min()),
    }


def _paired_rates(
    calls: dict[str, Callable[[], object]],
    batch: int,
    sizes: ThroughputSizes,
    flops_per_image: int,
    peak: float,
    sync: Callable[[], None],
) -> dict[str, dict[str, Any]]:
    """Each call (one batch of `batch` images) timed interleaved with the others, as a rate row."""
    timings = time_interleaved(
        {name: _looped(call, 1) for name, call in calls.items()},
        warmup=sizes.warmup,
        repeat=sizes.repeat,
        sync=sync,
    )
    return {name: _rate(timings[name], batch, 1, flops_per_image, peak) for name in calls}


def _training_rates(model: VAE, sizes: ThroughputSizes, device: torch.device, peak: float) -> dict[str, Any]:
    """Steps/s of `models.training._train_step` (forward, backward, clip, AdamW) without and with invariance.

    Each variant trains its own copy of the model; the variants are timed interleaved. The invariance
    variant (the default model's: NT-Xent between two altered views through a projection head) includes
    its altered copies and their JPEG round trips, as in real training.
    """
    steps: dict[str, Callable[[], None]] = {}
    out: dict[str, Any] = {}
    for variant, weight in (("plain", 0.0), ("invariance", INVARIANCE_WEIGHT)):
        step = _train_step_fn(model, sizes, weight, device)
        out[variant] = {"invariance_weight": weight, "batch": sizes.train_batch}
        try:
            out[variant]["flops_per_step"] = count_flops(step, inference=False)  # doubles as a warm-up
        except RuntimeError as exc:  # e.g. CPU-only augmentation code on a CUDA device
            out[variant]["error"] = f"{type(exc).__name__}: {exc}"
            continue
        steps[variant] = step
    if not steps:
        return out
    timings = time_interleaved(
        steps, warmup=sizes.train_warmup, repeat=sizes.train_repeat, sync=device_sync(device)
    )
    for variant, timing in timings.items():
        row = out[variant]
        row["steps_per_s"] = 1 / timing.median
        row["images_per_s"] = row["steps_per_s"] * sizes.train_batch
        row["achieved_gflops"] = row["flops_per_step"] * row["steps_per_s"] / 1e9
        row["ratio_to_matmul"] = row["achieved_gflops"] / peak
        row["timing"] = timing.to_dict()
    return out


def _train_step_fn(
    model: VAE, sizes: ThroughputSizes, invariance_weight: float, device: torch.device
) -> Callable[[], None]:
    net = copy.deepcopy(model).to(device).train()
    config = TrainConfig(
        batch_size=sizes.train_batch,
        invariance_weight=invariance_weight,
        invariance_form="head_ntxent",
        invariance_temperature=0.2,
    )
    head = ProjectionHead(model.config.latent_dim).to(device) if invariance_weight else None
    trained = list(net.parameters()) + (list(head.parameters()) if head is not None else [])
    optimizer = torch.optim.AdamW(trained, lr=config.learning_rate, weight_decay=config.weight_decay)
    images = smooth_images(sizes.train_batch, model.config.image_size, torch.Generator().manual_seed(1))
    images = images.to(device)
    generator = torch.Generator(device=device).manual_seed(2)

    def jpeg(batch: torch.Tensor, quality: int) -> torch.Tensor:
        return jpeg_round_trip(batch.cpu(), quality).to(batch.device)

    def step() -> None:
        _train_step(net, head, optimizer, None, None, images, config, 0, generator, jpeg)

    return step


def _rate_row(label: str, row: dict[str, Any]) -> list[Any]:
    return [label, row["images_per_s"], row["ms_per_batch"], row["achieved_gflops"], row["ratio_to_matmul"]]


def format_result(result: dict[str, Any]) -> str:
    """The printed tables: one block per measured device."""
    blocks = []
    devices = [("cpu", result["cpu"])] + ([("gpu", result["gpu"])] if result.get("gpu") else [])
    for label, data in devices:
        base = data["matmul_baseline"]
        rows: list[list[Any]] = []
        rows += [_rate_row(key, row) for key, row in data["inference"].items()]
        cl = data["channels_last"]
        rows += [
            _rate_row(f"{cl['op']} {layout} (paired)", cl[layout]) for layout in ("default", "channels_last")
        ]
        half = data.get("bf16")
        for precision in ("fp32", "bf16") if half else ():
            rows.append(_rate_row(f"{half['op']} channels_last {precision} (paired)", half[precision]))
        for variant, row in data["training"].items():
            name = f"train_b{row.get('batch', '?')} {variant}"
            if "error" in row:
                rows.append([f"{name} (failed: {row['error'][:60]})", None, None, None, None])
            else:
                rows.append(
                    [
                        name,
                        row["images_per_s"],
                        1000 / row["steps_per_s"],
                        row["achieved_gflops"],
                        row["ratio_to_matmul"],
                    ]
                )
        title = (
            f"Model throughput on {label} ({data['device_name']}, {data['torch_threads']} threads)\n"
            f"baseline fp32 matmul {base['size']}^2: {base['gflops_best']:.1f} GFLOP/s at the start, "
            f"{base['end']['gflops_best']:.1f} at the end; 'x matmul' = GFLOP/s / start baseline"
        )
        blocks.append(table(title, ["measure", "images/s", "ms/batch", "GFLOP/s", "x matmul"], rows))
        plain, inv = data["training"]["plain"], data["training"]["invariance"]
        facts = [
            f"encode {data['flops']['encode_per_image'] / 1e6:.1f} MFLOP/image, "
            f"decode {data['flops']['decode_per_image'] / 1e6:.1f} MFLOP/image",
            f"channels_last / default encode speed: {cl['speedup_channels_last']:.2f}x",
        ]
        if half:
            facts.append(
                f"bf16 / fp32 encode speed: {half['speedup_bf16']:.2f}x "
                f"(hardware bf16: {half['hardware_bf16']}); latent error "
                f"{half['latent_relative_error']:.4f} relative, min cosine {half['latent_cosine_min']:.5f}"
            )
        if "error" not in plain and "error" not in inv:
            facts.append(
                f"training: {plain['steps_per_s']:.3f} steps/s plain, {inv['steps_per_s']:.3f} steps/s with "
                f"invariance ({inv['steps_per_s'] / plain['steps_per_s']:.2f}x)"
            )
        blocks.append("\n".join(facts))
    if result.get("gpu") is None:
        blocks.append(f"gpu: not measured - {result.get('gpu_reason', 'unavailable')}")
    return "\n".join(blocks)
