"""LiveStore follows the writer: one reopen at a time, so an older store state is never swapped back in."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from latentdex.indexer.store import ImageRecord, LatentStore
from latentdex.service.live_store import LiveStore

DIM = 8


def add_images(folder: Path, start: int, count: int) -> None:
    records = [
        ImageRecord(path=f"{i}.jpg", size=i, mtime_ns=i, content_hash=f"{i:064x}", model_id="vae-t")
        for i in range(start, start + count)
    ]
    latents = np.random.default_rng(start).standard_normal((count, DIM)).astype(np.float32)
    with LatentStore.open(folder) as store:
        store.upsert_images(records, latents)


def test_a_slow_reopen_never_swaps_an_older_state_back_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "store"
    LatentStore.create(folder, model_id="vae-t", latent_dim=DIM, metric="cosine").close()
    add_images(folder, 0, 4)
    live = LiveStore(folder, check_interval=0)
    add_images(folder, 4, 4)  # state two: 8 images

    real_open = LatentStore.open
    slow_open_started, finish_slow_open = threading.Event(), threading.Event()
    state_two: list[LatentStore] = []

    def open_slowly_once(path: Path, *, read_only: bool = False) -> LatentStore:
        if not state_two:  # the first reopen reads state two, then stalls before it can swap it in
            state_two.append(real_open(path, read_only=read_only))
            slow_open_started.set()
            assert finish_slow_open.wait(30)
            return state_two[0]
        return real_open(path, read_only=read_only)

    monkeypatch.setattr(LatentStore, "open", staticmethod(open_slowly_once))
    slow = threading.Thread(target=live.refresh)
    slow.start()
    assert slow_open_started.wait(30)
    add_images(folder, 8, 4)  # state three: 12 images, while the first reopen is still running
    assert live.refresh() is False  # no second reopen meanwhile: the current store keeps answering
    finish_slow_open.set()
    slow.join(30)
    live.refresh()  # the manifest moved on since the slow reopen read it: state three comes in
    with live.use() as store:
        assert store.count() == 12
    live.close()
