"""Run the benchmark suite: print a table per benchmark and write one JSON result file per benchmark.

python -m bench.run_all --data data --results bench/results [--model DIR] [--quick] [--only NAME]
    [--store DIR] [--compare DIR ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench import (
    duplicates_files,
    duplicates_quality,
    duplicates_scale,
    index_memory,
    index_types,
    indexing_throughput,
    latent_latency,
    model_throughput,
    query_latency,
    retrieval_quality,
    web_latency,
)
from bench.machine import machine_facts
from bench.report import write_result
from latentdex.errors import BadCheckpoint
from latentdex.models.checkpoint import DEFAULT_MODEL_DIR, read_card


@dataclass(frozen=True)
class Benchmark:
    """A benchmark's entry point and its table printer."""

    run: Callable[[argparse.Namespace], dict[str, Any]]
    format: Callable[[dict[str, Any]], str]


BENCHMARKS: dict[str, Benchmark] = {
    model_throughput.NAME: Benchmark(
        run=lambda args: model_throughput.run(args.model, quick=args.quick),
        format=model_throughput.format_result,
    ),
    retrieval_quality.NAME: Benchmark(
        run=lambda args: retrieval_quality.run(
            args.model, args.data, quick=args.quick, workers=args.workers, compare=args.compare
        ),
        format=retrieval_quality.format_result,
    ),
    duplicates_quality.NAME: Benchmark(
        run=lambda args: duplicates_quality.run(
            args.model, args.data, quick=args.quick, workers=args.workers
        ),
        format=duplicates_quality.format_result,
    ),
    duplicates_files.NAME: Benchmark(
        run=lambda args: duplicates_files.run(args.model, args.data, quick=args.quick),
        format=duplicates_files.format_result,
    ),
    duplicates_scale.NAME: Benchmark(
        run=lambda args: duplicates_scale.run(args.model, quick=args.quick, threads=args.threads),
        format=duplicates_scale.format_result,
    ),
    index_types.NAME: Benchmark(
        run=lambda args: index_types.run(args.store, quick=args.quick, threads=args.threads),
        format=index_types.format_result,
    ),
    index_memory.NAME: Benchmark(
        run=lambda args: index_memory.run(args.model, quick=args.quick, threads=args.threads or 1),
        format=index_memory.format_result,
    ),
    indexing_throughput.NAME: Benchmark(
        run=lambda args: indexing_throughput.run(
            args.model, args.data, quick=args.quick, workers=args.workers, threads=args.threads
        ),
        format=indexing_throughput.format_result,
    ),
    query_latency.NAME: Benchmark(
        run=lambda args: query_latency.run(args.model, args.data, quick=args.quick, threads=args.threads),
        format=query_latency.format_result,
    ),
    latent_latency.NAME: Benchmark(
        run=lambda args: latent_latency.run(args.model, quick=args.quick),
        format=latent_latency.format_result,
    ),
    web_latency.NAME: Benchmark(
        run=lambda args: web_latency.run(args.model, args.data, quick=args.quick, threads=args.threads),
        format=web_latency.format_result,
    ),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("data"), help="data root (raw images in DATA/raw)")
    parser.add_argument(
        "--results", type=Path, default=Path("bench/results"), help="folder for the JSON files"
    )
    parser.add_argument(
        "--model", type=Path, default=None, help="model directory (default: the shipped model)"
    )
    parser.add_argument(
        "--compare",
        type=Path,
        action="append",
        default=[],
        help="retrieval_quality: another model directory scored in the same run (repeatable)",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test of about two minutes")
    parser.add_argument(
        "--only", choices=sorted(BENCHMARKS), action="append", help="run only this (repeatable)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch (and index_types', query_latency's, duplicates_scale's FAISS) threads (0: the default)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="image decoding processes (default: all CPUs; indexing_throughput: the pipeline's split)",
    )
    parser.add_argument(
        "--store", type=Path, default=None, help="a store whose latents index_types also measures (optional)"
    )
    return parser.parse_args(argv)


def run_benchmarks(args: argparse.Namespace) -> list[Path]:
    """Run the selected benchmarks in order; print each table and return the written JSON paths."""
    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = args.model or DEFAULT_MODEL_DIR
    model_id = read_card(model_dir).model_id
    written = []
    for name in args.only or list(BENCHMARKS):
        benchmark = BENCHMARKS[name]
        print(f"== {name} (model {model_id}{', quick' if args.quick else ''}) ==", flush=True)
        header = {
            "model_id": model_id,
            "model_dir": str(model_dir),
            "quick": args.quick,
            "machine": machine_facts().to_dict(),
        }
        started = time.perf_counter()
        result = benchmark.run(args)
        header["seconds_total"] = round(time.perf_counter() - started, 2)
        print(benchmark.format(result))
        path = write_result(args.results, name, header, result)
        print(f"({header['seconds_total']:.0f} s) wrote {path}\n", flush=True)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        written = run_benchmarks(args)
    except BadCheckpoint as exc:
        print(f"cannot load the model: {exc}", file=sys.stderr)
        return 2
    print("results written to " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
