"""Crash safety: real `latentdex index` processes SIGKILLed at random moments, then verify and a final run."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pytest
from conftest import shape_image
from indexing_support import save_tiny_model, write_photos
from typer.testing import CliRunner

from latentdex.errors import StoreError
from latentdex.indexer.catalog import Catalog, list_runs
from latentdex.indexer.store import ImageRecord, LatentStore
from latentdex.service.cli import app

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_a_create_killed_before_its_manifest_is_started_over(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    Catalog.create(folder / "catalog.sqlite", {"model_id": "vae-a"}).close()  # killed here: no manifest
    (folder / "vectors.faiss").write_bytes(b"half")
    (folder / ".manifest.json.x1.tmp").write_bytes(b"{")
    with LatentStore.create(folder, model_id="vae-b", latent_dim=4) as store:
        assert store.model_id == "vae-b" and store.verify().ok
    assert not list(folder.glob(".*.tmp"))


def test_a_catalog_holding_data_is_never_cleared_for_a_create(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    with LatentStore.create(folder, model_id="vae-a", latent_dim=4) as store:
        store.start_run("/photos")
    (folder / "manifest.json").unlink()
    with pytest.raises(StoreError, match="already holds"):
        LatentStore.create(folder, model_id="vae-b", latent_dim=4)
    catalog = Catalog.open(folder / "catalog.sqlite")
    with catalog.reading() as session:
        assert len(list_runs(session)) == 1
    catalog.close()


def test_temporary_files_of_a_killed_save_are_removed_by_the_next_writer(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    LatentStore.create(folder, model_id="vae-a", latent_dim=4).close()
    leftover = folder / ".vectors.faiss.abc123.tmp"
    leftover.write_bytes(b"partial")
    with LatentStore.open(folder, read_only=True):
        assert leftover.exists()  # readers change nothing
    with LatentStore.open(folder):
        assert not leftover.exists()


def test_a_manifest_left_behind_by_a_cut_short_save_is_rewritten_on_open(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    with LatentStore.create(folder, model_id="vae-a", latent_dim=4) as store:
        store.upsert_images(
            [ImageRecord(path="a.png", size=1, mtime_ns=1, content_hash="00" * 32, model_id="vae-a")],
            np.ones((1, 4), np.float32),
        )
        store.flush()
        manifest = (folder / "manifest.json").read_bytes()
        store.mark_failed(
            [ImageRecord(path="b.png", size=1, mtime_ns=1, content_hash=None, failure_reason="x")]
        )
        store.flush()
    (folder / "manifest.json").write_bytes(manifest)  # as if killed after the commit, before the manifest
    with LatentStore.open(folder, read_only=True) as reader:
        assert reader.verify().problems == ["manifest says failed_count = 0, the catalog 1"]
    with LatentStore.open(folder) as store:
        assert "rewrote the manifest" in store.last_reconcile.notes[0]
        assert store.verify().ok and store.info.failed_count == 1


def _store_activity(store: Path) -> tuple[tuple[int, int], ...]:
    """The stat of the catalog's files: it changes as soon as a process writes the store."""
    marks = []
    for name in ("catalog.sqlite", "catalog.sqlite-wal"):
        try:
            info = (store / name).stat()
            marks.append((info.st_size, info.st_mtime_ns))
        except FileNotFoundError:
            marks.append((-1, -1))
    return tuple(marks)


def _wait_for(condition: object, process: subprocess.Popen[bytes], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.002)
    return False


def _running_runs(store: Path) -> set[int]:
    """Ids of the runs the catalog records as still running: what a process killed inside a run leaves
    (until the next run marks them interrupted)."""
    if not (store / "catalog.sqlite").exists():
        return set()
    with contextlib.closing(sqlite3.connect(f"file:{store / 'catalog.sqlite'}?mode=ro", uri=True)) as db:
        try:
            return {row[0] for row in db.execute("SELECT id FROM runs WHERE status = 'running'")}
        except sqlite3.OperationalError:  # killed before the tables were made
            return set()


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)  # its own group: the decode workers die with it
    process.wait(timeout=30)


def _change_library(photos: Path, number: int, rng: random.Random) -> None:
    """Between crashes the library changes too: six files get new content, one moves, one goes, one comes."""
    names = sorted(path.name for path in photos.glob("photo*.png"))
    for index, name in enumerate(rng.sample(names, 6)):
        shape_image(1000 + 100 * number + index, number, 48).save(photos / name)
    if number == 2:
        (photos / "album").mkdir()
        (photos / "photo010.png").rename(photos / "album" / "moved.png")
    if number == 4:
        (photos / "photo020.png").unlink()
        shape_image(100, 1, 48).save(photos / "photo100.png")


@pytest.mark.slow
def test_sigkilled_index_runs_leave_a_store_that_verifies_and_completes(tmp_path: Path) -> None:
    photos, store = tmp_path / "photos", tmp_path / "store"
    write_photos(photos, 60, size=48)
    model = save_tiny_model(tmp_path / "model")
    command = [sys.executable, "-m", "latentdex.service.cli", "index", str(photos), "--store", str(store)]
    command += ["--model", str(model), "--workers", "1", "--batch-size", "2", "--flush-every", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rng = random.Random(20240611)
    # (moment, seconds): "start" kills that long after the process starts (interpreter and torch import);
    # "write" that long after the process first writes the store (0: inside create or open); "flush" as
    # soon as a vectors file is being saved (polled, so if it is missed, after up to 1 s of the run);
    # "run" once the catalog records a running run, so that at least one kill lands inside a run.
    schedule = [("start", rng.uniform(0.02, 0.3)), ("write", 0.0), ("write", rng.uniform(0.05, 0.5))]
    schedule += [("flush", rng.uniform(0.1, 1.0)), ("start", rng.uniform(0.5, 2.0))]
    schedule += [("write", rng.uniform(0.05, 0.5)), ("flush", rng.uniform(0.1, 1.0)), ("run", 0.0)]
    outcomes = []
    killed_inside_a_run: set[int] = set()  # ids of the runs the kills cut short
    for number, (moment, seconds) in enumerate(schedule):
        before = _store_activity(store)
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        if moment == "start":
            time.sleep(seconds)
        elif _wait_for(lambda before=before: _store_activity(store) != before, process):
            if moment == "write":
                time.sleep(seconds)
            elif moment == "run":
                started = lambda seen=frozenset(killed_inside_a_run): bool(_running_runs(store) - seen)  # noqa: E731
                assert _wait_for(started, process), "no run started"
            elif _wait_for(lambda: any(store.glob(".vectors.faiss.*.tmp")), process, seconds):
                moment = "flush (caught)"
        outcomes.append((moment, process.poll()))
        _kill(process)
        killed_inside_a_run |= _running_runs(store)
        if (store / "manifest.json").exists():
            result = runner.invoke(app, ["verify", str(store)])
            assert result.exit_code == 0, f"after kill {number} ({moment}): {result.output}"
        _change_library(photos, number, rng)
    assert sum(code is None for _, code in outcomes) >= 5, outcomes  # most kills hit a live process
    final = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    result = runner.invoke(app, ["verify", str(store)])
    assert result.exit_code == 0 and "consistent: 60 ok images" in result.output, result.output

    files = {path.relative_to(photos).as_posix(): path for path in photos.rglob("*.png")}
    assert len(files) == 60
    faiss.omp_set_num_threads(1)
    with LatentStore.open(store, read_only=True) as opened:
        entries = opened.entries()
        assert sorted(entry.path for entry in entries) == sorted(files)
        assert all(entry.status == "ok" for entry in entries)
        for path, file in files.items():  # one row per picture: nothing indexed twice under two paths
            matches = opened.find_by_hash(hashlib.sha256(file.read_bytes()).hexdigest())
            assert [record.path for record in matches] == [path]
        ids = [entry.id for entry in entries]
        hits = opened.search(opened.latents(ids), k=1)
        assert [row[0].id for row in hits] == ids
        runs = opened.runs()
    assert runs[-1].status == "complete" and not [run for run in runs if run.status == "running"]
    assert killed_inside_a_run
    assert {run.id for run in runs if run.status == "interrupted"} == killed_inside_a_run
    last = runs[-1].counts
    assert last.failed == 0 and last.new + last.changed + last.unchanged + last.moved == 60, last
    assert not list(store.glob(".*.tmp"))
