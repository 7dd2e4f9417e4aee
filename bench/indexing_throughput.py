"""Indexing throughput of the real `index_folder` pipeline against the decode-only rate of the same files.

Two folders (`bench.photo_folders`): camera-size JPEGs (200, quick 16) and 256x256 PNG crops (2000, quick
100). For each, passes alternate (decode-only, index, decode-only, index ...) so load from other processes
hits both alike:

- decode-only: `DecodePool` running `decode_for_index` (stat, sha256, decode, fit to the model's size) on
  every file with one worker per core (every core decoding: the fastest the files can be read), pool
  start-up included; no encoding, no store;
- index: `index_folder` into a fresh store, sharing the cores as it does by default (measured rates,
  `indexer.core_split`) unless `--workers`/`--threads` fix them.

Reported: images/s of both, indexing as a ratio of decode-only (the goal: >= 0.8, i.e. encoding and
storing hide behind decoding), peak memory (`bench.memory`), and where the main process spent the
indexing run. `IndexReport` has no per-stage times, so they are measured here by wrapping the codec's
`encode`, `DecodePool.results` (time blocked waiting for a decoded file) and the store's writes and saves.
An untimed warm-up pass of each kind runs first. The last index pass's store of each folder is kept in
bench/work/indexing/store-<folder> (usable as `run_all --store` for index_types' real-latents line).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.datasets import fetch
from bench.memory import PeakMemory
from bench.photo_folders import jpeg_folder, png_folder
from bench.report import table
from latentdex.indexer.decoding import DecodePool, decode_for_index
from latentdex.indexer.pipeline import _WINDOW_PER_WORKER, IndexOptions, index_folder
from latentdex.indexer.scan import iter_image_files
from latentdex.indexer.store import LatentStore
from latentdex.models.inference import LatentCodec

NAME = "indexing_throughput"
GOAL = 0.8  # indexing images/s over decode-only images/s
WORK_DIR = Path(__file__).resolve().parent / "work" / "indexing"
STAGES = ("decode_wait", "encode", "store_write", "store_flush")


@dataclass(frozen=True)
class IndexingSizes:
    """How many files per folder, and how many decode-only/index pass pairs per folder."""

    photos: int
    pngs: int
    repeat: int


FULL = IndexingSizes(photos=200, pngs=2000, repeat=3)
QUICK = IndexingSizes(photos=16, pngs=100, repeat=1)


def run(
    model_dir: str | os.PathLike[str] | None,
    data_root: str | os.PathLike[str],
    quick: bool = False,
    workers: int | None = None,
    threads: int = 0,
    work_dir: Path = WORK_DIR,
) -> dict[str, Any]:
    """Make (or reuse) the two folders under `work_dir` and measure both; returns the JSON-ready result."""
    sizes = QUICK if quick else FULL
    raw = fetch(Path(data_root))
    codec = LatentCodec.load(model_dir, precision="auto")
    options = IndexOptions(workers=workers, torch_threads=threads or None)
    started = time.perf_counter()
    folders = {
        "photos": jpeg_folder(raw, work_dir / f"photos-{sizes.photos}", sizes.photos),
        "small_pngs": png_folder(raw, work_dir / f"pngs-{sizes.pngs}", sizes.pngs),
    }
    result: dict[str, Any] = {
        "sizes": asdict(sizes),
        "cpu_count": os.cpu_count(),
        "workers": workers or "measured",
        "torch_threads": threads or "measured",
        "batch_size": options.batch_size,
        "precision": codec.precision,
        "image_size": codec.image_size,
        "goal_ratio": GOAL,
        "folders_ready_s": time.perf_counter() - started,
    }
    warm_up(folders["small_pngs"], work_dir, codec, options)
    for name, folder in folders.items():
        result[name] = measure_folder(folder, codec, options, sizes.repeat, keep=work_dir / f"store-{name}")
    return result


def warm_up(folder: Path, work_dir: Path, codec: LatentCodec, options: IndexOptions, files: int = 8) -> None:
    """One untimed decode-only and index pass over a few files, so that one-off costs (the forkserver's
    start, torch's and SQLite's first calls) fall in neither measured kind of pass."""
    small = work_dir / "warm-up"
    shutil.rmtree(small, ignore_errors=True)
    small.mkdir(parents=True)
    for path in list(iter_image_files(folder))[:files]:
        shutil.copy(path, small / path.name)
    decode_only([str(p) for p in iter_image_files(small)], codec.image_size, 2 * files)
    index_once(small, codec, options)
    shutil.rmtree(small)


def measure_folder(
    folder: Path, codec: LatentCodec, options: IndexOptions, repeat: int, keep: Path | None = None
) -> dict[str, Any]:
    """Alternate decode-only and index passes over `folder`; rates are medians over the passes.

    The last pass's store is kept at `keep` (replacing what is there), e.g. for `index_types --store`.
    """
    paths = [str(p) for p in iter_image_files(folder)]
    window = max(_WINDOW_PER_WORKER * (os.cpu_count() or 1), 2 * options.batch_size)  # as `_encode`'s
    decode_passes, index_passes = [], []
    for attempt in range(repeat):
        decode_passes.append(decode_only(paths, codec.image_size, window))
        index_passes.append(index_once(folder, codec, options, keep if attempt == repeat - 1 else None))
    decode_rate = statistics.median(p["images_per_s"] for p in decode_passes)
    index_rate = statistics.median(p["images_per_s"] for p in index_passes)
    ratios = [i["images_per_s"] / d["images_per_s"] for d, i in zip(decode_passes, index_passes, strict=True)]
    return {
        "files": describe_files(paths),
        "decode_only": {"images_per_s": decode_rate, "passes": decode_passes},
        "index": {"images_per_s": index_rate, "passes": index_passes},
        "ratio": index_rate / decode_rate,
        "ratio_per_pair": ratios,
        "meets_goal": index_rate / decode_rate >= GOAL,
    }


def describe_files(paths: list[str]) -> dict[str, Any]:
    """How many files, their total size, and their mean size in megapixels (read from the headers)."""
    pixels = []
    for path in paths:
        with Image.open(path) as image:
            pixels.append(image.size[0] * image.size[1])
    total = sum(os.path.getsize(p) for p in paths)
    return {
        "count": len(paths),
        "total_mb": total / 1e6,
        "mean_file_mb": total / 1e6 / max(1, len(paths)),
        "mean_megapixels": float(np.mean(pixels)) / 1e6 if pixels else 0.0,
    }


def decode_only(paths: list[str], image_size: int, window: int) -> dict[str, Any]:
    """The pipeline's decode work alone (its pool and per-file function), one worker per core."""
    workers = os.cpu_count() or 1
    with PeakMemory() as memory:
        started = time.perf_counter()
        with DecodePool(min(workers, len(paths)), decode_for_index, image_size, window) as pool:
            failed = sum(1 for _, result in pool.results(paths, lambda: False) if result.failure)
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "images_per_s": len(paths) / seconds,
        "failed": failed,
        "memory": memory.result(),
    }


def index_once(
    folder: Path, codec: LatentCodec, options: IndexOptions, keep: Path | None = None
) -> dict[str, Any]:
    """One `index_folder` run into a fresh store, with the main process's stage times.

    The store is made beside `folder` and deleted after, or moved to `keep` when given.
    """
    store_dir = Path(tempfile.mkdtemp(prefix=".bench-store-", dir=folder.parent))
    try:
        clock = StageClock()
        with clock.installed(), PeakMemory() as memory:
            started = time.perf_counter()
            report = index_folder(folder, store_dir, TimedCodec(codec, clock), options)
            seconds = time.perf_counter() - started
        if keep is not None:
            shutil.rmtree(keep, ignore_errors=True)
            store_dir.rename(keep)
    finally:
        shutil.rmtree(store_dir, ignore_errors=True)
    stages = {name: clock.seconds[name] for name in STAGES}
    stages["other"] = seconds - sum(stages.values())
    done = report.counts.new + report.counts.changed + report.counts.failed
    return {
        "seconds": seconds,
        "images_per_s": done / seconds,
        "report_images_per_s": report.images_per_second,
        "indexed": report.counts.new + report.counts.changed,
        "failed": report.counts.failed,
        "split": asdict(report.split) if report.split else None,
        "stages_s": stages,
        "memory": memory.result(),
    }


class StageClock:
    """Seconds the main process spends per stage, from wrappers around the pipeline's collaborators."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def timing(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - start

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Wrap `DecodePool.results` and the store's writes and saves while the block runs."""
        with ExitStack() as stack:
            stack.enter_context(_patched(DecodePool, "results", self._timed_results))
            for method, stage in (
                ("upsert_images", "store_write"),
                ("mark_failed", "store_write"),
                ("flush", "store_flush"),
            ):
                stack.enter_context(_patched(LatentStore, method, self._timed_call(stage)))
            yield

    def _timed_results(self, original: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
        clock = self

        def results(pool: DecodePool, *args: Any, **kwargs: Any) -> Iterator[Any]:
            iterator = original(pool, *args, **kwargs)
            while True:
                with clock.timing("decode_wait"):
                    item = next(iterator, None)
                if item is None:
                    return
                yield item

        return results

    def _timed_call(self, stage: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
            def timed(*args: Any, **kwargs: Any) -> Any:
                with self.timing(stage):
                    return original(*args, **kwargs)

            return timed

        return wrap


@contextmanager
def _patched(
    owner: type, name: str, wrap: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> Iterator[None]:
    original = owner.__dict__[name]
    setattr(owner, name, wrap(original))
    try:
        yield
    finally:
        setattr(owner, name, original)


class TimedCodec(LatentCodec):
    """The same model and card as `codec`, with `encode` time added to the clock's "encode" stage."""

    def __init__(self, codec: LatentCodec, clock: StageClock) -> None:
        super().__init__(codec.model, codec.card, codec.batch_size, codec.precision)
        self.clock = clock

    def encode(self, images: np.ndarray) -> np.ndarray:
        with self.clock.timing("encode"):
            return super().encode(images)


def format_result(result: dict[str, Any]) -> str:
    """The printed tables: rates and memory per folder, then the main process's stage split."""
    rows, stage_rows = [], []
    for name in ("photos", "small_pngs"):
        data = result[name]
        files = data["files"]
        index_passes = data["index"]["passes"]
        decode_passes = data["decode_only"]["passes"]
        split = index_passes[-1].get("split") or {}
        rows.append(
            [
                f"{name} ({files['count']} x {files['mean_megapixels']:.1f} MP, "
                f"{files['mean_file_mb']:.2f} MB)",
                f"{split.get('workers', '?')} / {split.get('threads', '?')}",
                data["decode_only"]["images_per_s"],
                data["index"]["images_per_s"],
                data["ratio"],
                "yes" if data["meets_goal"] else "no",
                max(p["memory"]["tree_peak_rss_mib"] for p in decode_passes),
                max(p["memory"]["self_peak_mib"] for p in index_passes),
                max(p["memory"]["children_peak_mib"] for p in index_passes),
                max(p["memory"]["tree_peak_rss_mib"] for p in index_passes),
            ]
        )
        seconds = statistics.median(p["seconds"] for p in index_passes)
        stages = {s: statistics.median(p["stages_s"][s] for p in index_passes) for s in (*STAGES, "other")}
        stage_rows.append([name, seconds, *(f"{stages[s]:.2f} ({stages[s] / seconds:.0%})" for s in stages)])
    title = (
        f"Indexing throughput (decode-only: {result['cpu_count']} workers, one per core; index: "
        f"workers {result['workers']}, threads {result['torch_threads']}; {result['precision']}, "
        f"model input {result['image_size']} px; goal: index/decode >= {result['goal_ratio']})"
    )
    headers = [
        "folder",
        "index workers / threads",
        "decode img/s",
        "index img/s",
        "index/decode",
        "goal",
        "dec tree MiB",
        "idx main MiB",
        "idx worker MiB",
        "idx tree MiB",
    ]
    stage_title = "Index run, main process time by stage (median pass; seconds and share of the run)"
    stage_headers = ["folder", "run s", *STAGES, "other"]
    notes = (
        "MiB: peaks during the pass - main = this process (VmHWM), worker = largest decode worker, "
        "tree = sampled sum of RSS over all processes; decode_wait = blocked waiting for a decoded file"
    )
    return "\n".join([table(title, headers, rows), table(stage_title, stage_headers, stage_rows), notes])
