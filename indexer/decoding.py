"""Decodes photos for the indexer in worker processes: stat, sha256 and model-sized pixels, or why not.

`decode_for_index` is the per-file work; `DecodePool` runs it in worker processes and survives a worker
that dies. Workers import this module only, so it imports no torch, FAISS or SQL: they start fast, and a
crashing decoder takes down one worker, not the run.
"""

from __future__ import annotations

import errno
import hashlib
import multiprocessing
import os
import signal
import stat
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import datetime
from multiprocessing import forkserver

import numpy as np

from latentdex.errors import BadImage
from latentdex.indexer.load import load_image, model_square
from latentdex.indexer.parent_watch import die_with_parent, helper_context
from latentdex.indexer.perceptual_hash import perceptual_hashes
from latentdex.indexer.pixel_alignment import thumbnail_bytes

HASH_CHUNK = 1 << 20
WORKER_DIED = "the decoder crashed (its worker process died)"


@dataclass(frozen=True, eq=False)  # eq=False: comparing ndarrays with == is ambiguous
class DecodedFile:
    """What a worker read from one file. `pixels` is (S, S, 3) uint8, or None with `failure` set.

    `size`, `mtime_ns` and `content_hash` are those of the bytes actually read (0, 0, None if the file
    could not be opened).
    """

    size: int
    mtime_ns: int
    content_hash: str | None
    pixels: np.ndarray | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    capture_time: datetime | None = None
    camera_make: str | None = None
    camera_model: str | None = None
    failure: str | None = None
    # Set (and `pixels` dropped) by engines that encode where they decode, such as the Ray engine.
    latent: np.ndarray | None = None
    perceptual_hashes: np.ndarray | None = None  # of the decoded frame (`indexer.perceptual_hash`)
    alignment_thumbnail: bytes | None = None  # of the model frame (`indexer.pixel_alignment`)


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The sha256 (hex) of a regular file's bytes, read in chunks; OSError if it cannot be read."""
    digest, _ = _hash_regular_file(path)
    return digest


def read_failure(error: OSError) -> str:
    """A short reason for an OSError met while opening or reading a photo."""
    reasons = {
        errno.ENOENT: "file not found (deleted, or a broken symlink)",
        errno.ELOOP: "symlink loop",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EISDIR: "is a directory",
    }
    return reasons.get(error.errno or 0, f"cannot read the file: {error.strerror or error}")


def worker_init() -> None:
    """Run once in each worker process: Ctrl-C reaches the whole process group, but stopping is the
    parent's decision (it finishes the current batch first), so workers ignore it. A worker dies with
    the process that forked it (the forkserver, which dies with the indexer)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent()


def decode_for_index(path: str, image_size: int) -> DecodedFile:
    """Hash the file at `path` and decode it to an `image_size` square; never raises for a bad file."""
    try:
        digest, info = _hash_regular_file(path)
    except _NotRegular as exc:
        return DecodedFile(exc.size, exc.mtime_ns, None, failure="not a regular file")
    except OSError as exc:
        return DecodedFile(0, 0, None, failure=read_failure(exc))
    size, mtime_ns = info.st_size, info.st_mtime_ns
    try:
        image = load_image(path, min_side=image_size)
        pixels = model_square(image.pixels, image_size)
        hashes = perceptual_hashes(image.pixels)
        thumbnail = thumbnail_bytes(pixels)
    except BadImage as exc:
        return DecodedFile(size, mtime_ns, digest, failure=exc.reason)
    except Exception as exc:  # a loader bug must cost one file, not the run; the reason names it
        return DecodedFile(size, mtime_ns, digest, failure=f"unexpected {type(exc).__name__}: {exc}")
    exif = image.exif
    return DecodedFile(
        size,
        mtime_ns,
        digest,
        pixels=pixels,
        width=image.width,
        height=image.height,
        format=image.format,
        capture_time=exif.capture_time,
        camera_make=exif.camera_make,
        camera_model=exif.camera_model,
        perceptual_hashes=hashes,
        alignment_thumbnail=thumbnail,
    )


DecodeFn = Callable[[str, int], DecodedFile]


class DecodePool:
    """Worker processes decoding files; a worker that dies costs the one file it was decoding.

    When the pool breaks, the files whose results had not come back are decoded again one at a time in
    a fresh pool: the one that breaks it alone is recorded as failed, the others succeed.
    """

    def __init__(self, workers: int, decode: DecodeFn, image_size: int, window: int) -> None:
        self.workers, self.decode, self.image_size, self.window = workers, decode, image_size, window
        self._context = _process_context()
        self._executor = self._start()

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)

    def results(self, paths: Sequence[str], stop: Callable[[], bool]) -> Iterator[tuple[int, DecodedFile]]:
        """(index into `paths`, result) for each path, roughly in order, until done or `stop()` is true;
        after a stop the files already submitted are still returned."""
        pending: deque[tuple[int, Future[DecodedFile]]] = deque()
        next_index = 0
        while True:
            while next_index < len(paths) and len(pending) < self.window and not stop():
                try:
                    future = self._executor.submit(self.decode, paths[next_index], self.image_size)
                except BrokenProcessPool:
                    break  # found broken on submit: the result loop below recovers
                pending.append((next_index, future))
                next_index += 1
            if not pending:
                if next_index < len(paths) and not stop():
                    self._restart()
                    continue
                return
            index, future = pending.popleft()
            try:
                yield index, future.result()
            except BrokenProcessPool:
                in_flight = [(index, future), *pending]
                pending.clear()
                yield from self._recover(in_flight, paths)
            except Exception as exc:  # the decode function itself raised: this file fails, the run goes on
                yield index, DecodedFile(0, 0, None, failure=f"the decoder failed: {exc!r}")

    def _recover(
        self, in_flight: list[tuple[int, Future[DecodedFile]]], paths: Sequence[str]
    ) -> Iterator[tuple[int, DecodedFile]]:
        self._restart()  # joins the broken pool first, so every future below is settled
        suspects = []
        for index, future in in_flight:
            if future.done() and not future.cancelled() and future.exception() is None:
                yield index, future.result()
            else:
                suspects.append(index)
        for index in suspects:
            try:
                result = self._executor.submit(self.decode, paths[index], self.image_size).result()
            except BrokenProcessPool:
                self._restart()
                result = DecodedFile(0, 0, None, failure=WORKER_DIED)
            except Exception as exc:
                result = DecodedFile(0, 0, None, failure=f"the decoder failed: {exc!r}")
            yield index, result

    def _start(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=self._context, initializer=worker_init)

    def _restart(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._executor = self._start()


def start_decode_helpers() -> None:
    """Start the server decode workers fork from now, rather than when the first pool needs it: its
    start (a Python process importing this module, ~0.3 s) then runs beside what the caller loads next
    (torch and the model: ~1.2 s) instead of after it."""
    if _process_context().get_start_method() == "forkserver":
        forkserver.ensure_running()


def _process_context() -> multiprocessing.context.BaseContext:
    # Workers fork from a server that imported only the decoder: fast restarts after a crash.
    return helper_context([__name__])


class _NotRegular(OSError):
    def __init__(self, info: os.stat_result) -> None:
        super().__init__("not a regular file")
        self.size, self.mtime_ns = info.st_size, info.st_mtime_ns


def _hash_regular_file(path: str | os.PathLike[str]) -> tuple[str, os.stat_result]:
    # O_NONBLOCK: opening a FIFO that happens to be named like a photo must not hang the worker.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _NotRegular(info)
        digest = hashlib.sha256()
        while chunk := os.read(fd, HASH_CHUNK):
            digest.update(chunk)
        return digest.hexdigest(), info
    finally:
        os.close(fd)
