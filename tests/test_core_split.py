"""Sharing the cores between decode workers and the encoder: the rule, the measurement, the index run."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import write_image_folder
from crashing_decoder import decode_or_crash

from latentdex.indexer.core_split import MEASURE_MIN_FILES, measured_split, plan_cores, split_cores
from latentdex.indexer.decoding import DecodedFile, decode_for_index
from latentdex.indexer.pipeline import IndexOptions, index_folder
from latentdex.models.inference import LatentCodec


def test_split_cores_keeps_workers_and_threads_within_the_cores() -> None:
    assert split_cores(2) == (1, 1)
    assert split_cores(16) == (13, 3)
    assert split_cores(1) == (1, 1)
    assert split_cores(8, workers=6) == (6, 2)
    assert split_cores(8, torch_threads=4) == (4, 4)


def test_plan_gives_decoding_the_cores_when_it_is_the_slow_side() -> None:
    # 10-MP JPEGs (52/s per core) against a bf16 encoder (850/s per thread): decoding needs 1.88 of 2 cores.
    assert plan_cores(2, 850, 52) == (2, 1)
    assert plan_cores(16, 850, 52) == (15, 1)  # the encoder needs 0.92 of a core
    assert plan_cores(1, 850, 52) == (1, 1)


def test_plan_gives_the_encoder_more_threads_when_files_decode_fast() -> None:
    workers, threads = plan_cores(16, 400, 400)
    assert (workers, threads) == (8, 8)
    workers, threads = plan_cores(16, 100, 900)
    assert workers == 2 and threads == 14


@pytest.mark.parametrize(("cores", "encode", "decode"), [(0, 1, 1), (2, 0, 1), (2, 1, -1)])
def test_plan_refuses_nonsense(cores: int, encode: float, decode: float) -> None:
    with pytest.raises(ValueError, match="positive rates"):
        plan_cores(cores, encode, decode)


def slow_decode(path: str, image_size: int) -> DecodedFile:
    """A decoder that takes 50 ms a file, as a camera JPEG does on a slow core."""
    time.sleep(0.05)
    return decode_for_index(path, image_size)


def test_the_measurement_follows_the_decoder_speed(tmp_path: Path) -> None:
    paths = [str(p) for p in write_image_folder(tmp_path, sources=40, per_source=2)]
    codec = LatentCodec.load()
    slow = measured_split(4, codec, slow_decode, paths, batch_size=64)
    fast = measured_split(4, codec, decode_for_index, paths, batch_size=64)
    assert slow.decode_rate is not None and slow.decode_rate < 25
    assert fast.decode_rate is not None and fast.decode_rate > slow.decode_rate * 3
    assert slow.encode_rate is not None and slow.encode_rate > 0
    assert slow.workers == 4
    # the split is the plan for the rates measured, and a faster decoder needs fewer workers (how many
    # threads the encoder then gets depends on this machine's encoder speed)
    assert (fast.workers, fast.threads) == plan_cores(4, fast.encode_rate, fast.decode_rate)
    assert fast.workers < slow.workers and fast.threads >= slow.threads
    assert "measured per core" in slow.describe()


def test_a_small_run_is_not_measured(tmp_path: Path) -> None:
    paths = [str(p) for p in write_image_folder(tmp_path, sources=3, per_source=1)]
    split = measured_split(8, LatentCodec.load(), decode_for_index, paths, batch_size=64)
    assert (split.workers, split.encode_rate, split.decode_rate) == (3, None, None)


def test_an_index_run_reports_its_measured_split(tmp_path: Path) -> None:
    write_image_folder(tmp_path / "photos", sources=MEASURE_MIN_FILES // 2 + 2, per_source=2)
    report = index_folder(tmp_path / "photos", tmp_path / "store", LatentCodec.load())
    assert report.counts.new == MEASURE_MIN_FILES + 4
    assert report.split is not None and report.split.encode_rate is not None
    fixed = index_folder(
        tmp_path / "photos", tmp_path / "again", LatentCodec.load(), IndexOptions(workers=1, torch_threads=1)
    )
    assert fixed.split is not None and (fixed.split.workers, fixed.split.encode_rate) == (1, None)


def test_a_file_that_crashes_its_decoder_while_timing_costs_one_file_not_the_run(tmp_path: Path) -> None:
    """The timing decodes run in a worker process: a crash there must not take the indexer with it."""
    photos = write_image_folder(tmp_path / "photos", sources=MEASURE_MIN_FILES // 2 + 2, per_source=2)
    for path in photos[::17]:  # spread like the sample, so the timing meets one of them
        path.rename(path.with_name(f"crash-{path.name}"))
    report = index_folder(tmp_path / "photos", tmp_path / "store", LatentCodec.load(), decode=decode_or_crash)
    crashed = len(photos[::17])
    assert report.counts.new == len(photos) - crashed and report.counts.failed == crashed
    assert report.split is not None and report.split.decode_rate is not None
