"""How an index run shares the cores between decode processes and the encoder, from measured rates.

The pipeline's rate is the slower of decoding (worker processes, one core each) and encoding (torch
threads in the main process). Which one needs more cores depends on the files and on the CPU: measured on
an AMD EPYC with AVX512-BF16, a 10-MP JPEG decodes at about 80/s per core while the v2 encoder runs about
890/s per thread in bfloat16, so decoding needs nearly every core; 0.1-MP PNGs decode at about 220/s and
shift the balance (bench: indexing_throughput). A fixed rule is wrong for one of them, so the run times
one encoder batch and a few files before it starts the workers (the files in a worker process of their
own, as the run decodes them), and gives each side the share of the cores that makes the two rates meet.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from latentdex.indexer.decoding import DecodeFn, DecodePool
from latentdex.models.inference import LatentCodec

MEASURE_MIN_FILES = 64  # smaller runs skip the measurement: it would cost more than a good split saves
SAMPLE_FILES = 3  # files decoded in a worker to time decoding (their results are discarded)
_OVERLAP = 0.25  # the encoder idles while it waits for a batch, so the workers may round up into its core


@dataclass(frozen=True)
class CoreSplit:
    """Decode worker processes and encoder threads, and what they were decided from."""

    workers: int
    threads: int
    encode_rate: float | None = None  # images/s of one encoder thread, measured; None: not measured
    decode_rate: float | None = None  # images/s of one decode process, measured; None: not measured

    def describe(self) -> str:
        text = f"{self.workers} decode worker(s), {self.threads} encoder thread(s)"
        if self.encode_rate is not None and self.decode_rate is not None:
            text += (
                f" (measured per core: encode {self.encode_rate:,.0f} images/s, "
                f"decode {self.decode_rate:,.0f} images/s)"
            )
        return text


def split_cores(cores: int, workers: int | None = None, torch_threads: int | None = None) -> tuple[int, int]:
    """(decode workers, torch threads) before anything is measured: what the caller fixed, the rest of
    the cores to the other side, and one encoder thread per six cores when neither is fixed."""
    if torch_threads is None:
        torch_threads = max(1, round(cores / 6)) if workers is None else max(1, cores - workers)
    if workers is None:
        workers = max(1, cores - torch_threads)
    return workers, torch_threads


def plan_cores(cores: int, encode_rate: float, decode_rate: float) -> tuple[int, int]:
    """(decode workers, encoder threads) that make the measured rates meet on `cores` cores.

    Decoding gets cores * E / (E + D) of them (E, D: images/s of one encoder thread, one decode process).
    The encoder idles between batches, so workers round up into its core unless it needs most of one.
    """
    if cores < 1 or encode_rate <= 0 or decode_rate <= 0:
        raise ValueError(f"need cores >= 1 and positive rates, got {cores}, {encode_rate}, {decode_rate}")
    decode_share = cores * encode_rate / (encode_rate + decode_rate)
    workers = min(cores, max(1, math.ceil(decode_share - _OVERLAP)))
    threads = min(cores, max(1, round(cores - decode_share)))
    return workers, threads


def measured_split(
    cores: int,
    codec: LatentCodec,
    decode: DecodeFn,
    paths: Sequence[str],
    batch_size: int,
) -> CoreSplit:
    """Time one encoder batch on one thread and `SAMPLE_FILES` decodes, then `plan_cores`.

    Runs of fewer than `MEASURE_MIN_FILES` files take the default split, capped at one worker per file.
    """
    if len(paths) < MEASURE_MIN_FILES:
        _, threads = split_cores(cores)
        return CoreSplit(max(1, min(cores, len(paths))), threads)
    encode_rate = _encode_rate(codec, batch_size)
    decode_rate = _decode_rate(decode, paths, codec.image_size)
    workers, threads = plan_cores(cores, encode_rate, decode_rate)
    return CoreSplit(workers, threads, encode_rate, decode_rate)


def _decode_rate(decode: DecodeFn, paths: Sequence[str], image_size: int) -> float:
    """Files/s of one decode process, from `SAMPLE_FILES` files spread over `paths`, decoded one after
    another in a worker process like the run's: a file that crashes its decoder costs that worker, not
    this process. One more file first, untimed, pays for the worker's start."""
    step = max(1, len(paths) // (SAMPLE_FILES + 1))
    sample = list(paths[::step][: SAMPLE_FILES + 1])
    with DecodePool(1, decode, image_size, window=1) as pool:
        results = pool.results(sample, lambda: False)
        next(results)
        started = time.perf_counter()
        timed = sum(1 for _ in results)
        seconds = time.perf_counter() - started
    return timed / max(seconds, 1e-6)


def _encode_rate(codec: LatentCodec, batch_size: int) -> float:
    """Images/s of the encoder on one thread, from the second of two calls (the first builds kernels,
    which the run's first batch then finds ready)."""
    images = np.zeros((batch_size, codec.image_size, codec.image_size, 3), np.uint8)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        codec.encode(images)
        started = time.perf_counter()
        codec.encode(images)
        return batch_size / max(time.perf_counter() - started, 1e-6)
    finally:
        torch.set_num_threads(before)
