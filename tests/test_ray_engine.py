"""The Ray engine on a local Ray instance: the same store as the local engine, failures recorded, and an
interrupted run resumed without duplicates, with decoding and encoding done by Ray actors."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import shape_image
from typer.testing import CliRunner

from latentdex.indexer.pipeline import IndexOptions, index_folder
from latentdex.indexer.store import LatentStore
from latentdex.models.inference import LatentCodec
from latentdex.service.cli import app

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    except Exception as exc:  # e.g. a sandbox without the shared memory Ray's object store needs
        pytest.skip(f"a local Ray instance cannot start here: {exc}")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ray") / "photos"
    (folder / "album").mkdir(parents=True)
    for i in range(40):
        shape_image(i, i % 4, 64).save(folder / "album" / f"p{i:02d}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    return folder


def test_the_ray_engine_builds_the_store_the_local_engine_builds(
    local_ray: None, photos: Path, tmp_path: Path
) -> None:
    codec = LatentCodec.load(precision="fp32")
    local = index_folder(photos, tmp_path / "local", codec, IndexOptions(workers=1))
    remote = index_folder(photos, tmp_path / "ray", codec, IndexOptions(engine="ray", batch_size=8))
    assert remote.counts == local.counts and remote.counts.new == 40 and remote.counts.failed == 1
    assert [path for path, _ in remote.failures] == ["broken.jpg"]
    with LatentStore.open(tmp_path / "local", read_only=True) as a, LatentStore.open(tmp_path / "ray") as b:
        assert b.verify().ok
        by_path = {entry.path: entry.id for entry in a.entries()}
        for entry in b.entries():
            if entry.status == "ok":
                np.testing.assert_allclose(
                    b.latents([entry.id]), a.latents([by_path[entry.path]]), rtol=1e-4, atol=1e-5
                )


def test_an_interrupted_ray_run_resumes_without_duplicates(
    local_ray: None, photos: Path, tmp_path: Path
) -> None:
    codec = LatentCodec.load(precision="fp32")
    calls = iter(range(10_000))
    stop_after = 3  # stop asked early: the chunks already running are still written

    def stopping_soon(_progress: object) -> None:
        if next(calls) == stop_after:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        index_folder(
            photos,
            tmp_path / "store",
            codec,
            IndexOptions(engine="ray", batch_size=4, flush_every=1),
            on_progress=stopping_soon,
        )
    result = CliRunner().invoke(
        app, ["index", str(photos), "--store", str(tmp_path / "store"), "--engine", "ray"]
    )
    assert result.exit_code == 0, result.output
    with LatentStore.open(tmp_path / "store") as store:
        assert store.verify().ok
        entries = store.entries()
        assert sorted(e.path for e in entries if e.status == "ok") == [
            f"album/p{i:02d}.png" for i in range(40)
        ]
        for i in (0, 17, 39):
            digest = hashlib.sha256((photos / "album" / f"p{i:02d}.png").read_bytes()).hexdigest()
            assert len(store.find_by_hash(digest)) == 1
