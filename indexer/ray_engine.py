"""Decoding and encoding spread over a Ray cluster: `latentdex index ... --engine ray [--address ...]`.

Each Ray actor holds the model and turns a chunk of files into `DecodedFile`s that carry their latent
(decoded, fitted and encoded where the file was read, so only 512 bytes per image travel back). The
driver stays the store's only writer: it takes the results as they come and writes them through the same
batched path as the local engine, so an interrupted run resumes, and a crash is repaired, exactly as there.
The photos and the model must be at the same paths on every node (a shared filesystem).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from types import TracebackType

import numpy as np
import ray
import torch

from latentdex.errors import ModelMismatch
from latentdex.indexer.decoding import DecodedFile, decode_for_index
from latentdex.models.checkpoint import DEFAULT_MODEL_DIR
from latentdex.models.inference import LatentCodec

CHUNK = 16  # files per task: enough to batch the encoder, few enough to keep every actor busy
IN_FLIGHT_PER_ACTOR = 2


@ray.remote
class _Encoder:
    """One worker's model: decodes files and encodes the decoded ones in one batch."""

    def __init__(self, model_dir: str, precision: str, threads: int) -> None:
        torch.set_num_threads(threads)
        self.codec = LatentCodec.load(model_dir, precision=precision)  # type: ignore[arg-type]

    def model_id(self) -> str:
        return self.codec.model_id

    def run(self, chunk: list[tuple[int, str]]) -> list[tuple[int, DecodedFile]]:
        results = [(index, decode_for_index(path, self.codec.image_size)) for index, path in chunk]
        decoded = [(index, result) for index, result in results if result.failure is None]
        if not decoded:
            return results
        latents = self.codec.encode(np.stack([result.pixels for _, result in decoded]))
        encoded = {
            index: _with_latent(result, latent)
            for (index, result), latent in zip(decoded, latents, strict=True)
        }
        return [(index, encoded.get(index, result)) for index, result in results]


def _with_latent(result: DecodedFile, latent: np.ndarray) -> DecodedFile:
    return replace(result, pixels=None, latent=latent)


class RayEngine:
    """Actors on a Ray cluster (started locally if `address` is None and none is running) that decode and
    encode; `results` yields (index, DecodedFile) in completion order, like `DecodePool.results`."""

    def __init__(
        self,
        codec: LatentCodec,
        model_dir: str | os.PathLike[str] | None,
        address: str | None = None,
        actors: int | None = None,
        threads_per_actor: int = 1,
    ) -> None:
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
        count = actors or max(1, int(ray.cluster_resources().get("CPU", 1)) // threads_per_actor)
        directory = str(model_dir or DEFAULT_MODEL_DIR)
        spawn = _Encoder.options(num_cpus=threads_per_actor)  # type: ignore[attr-defined]
        self._actors = [spawn.remote(directory, codec.precision, threads_per_actor) for _ in range(count)]
        found = set(ray.get([actor.model_id.remote() for actor in self._actors]))
        if found != {codec.model_id}:
            self.close()
            raise ModelMismatch(
                f"the Ray workers loaded {sorted(found)}, not {codec.model_id}: is the model on a shared "
                "path?"
            )

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def results(self, paths: Sequence[str], stop: Callable[[], bool]) -> Iterator[tuple[int, DecodedFile]]:
        """Every file's result as chunks complete; after `stop()` turns true, no new chunk is sent and
        the chunks in flight are still collected (their work is written, not thrown away)."""
        chunks = deque(
            [(i, paths[i]) for i in range(start, min(start + CHUNK, len(paths)))]
            for start in range(0, len(paths), CHUNK)
        )
        idle = deque(self._actors * IN_FLIGHT_PER_ACTOR)
        running: dict[ray.ObjectRef, object] = {}
        while chunks or running:
            while chunks and idle and not stop():
                actor = idle.popleft()
                running[actor.run.remote(chunks.popleft())] = actor
            if not running:
                return
            done, _ = ray.wait(list(running), num_returns=1)
            for reference in done:
                idle.append(running.pop(reference))
                yield from ray.get(reference)
            if stop():
                chunks.clear()

    def close(self) -> None:
        for actor in getattr(self, "_actors", []):
            ray.kill(actor)
        self._actors = []
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
