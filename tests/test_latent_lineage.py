"""A model whose decoder alone was retrained keeps its latents: stores made with its parent stay valid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_image_folder

from latentdex.errors import BadCheckpoint, ModelMismatch
from latentdex.indexer.pipeline import IndexOptions, index_folder
from latentdex.indexer.store import LatentStore
from latentdex.indexer.training_data import load_training_set
from latentdex.models.checkpoint import load_model, read_card, save_model
from latentdex.models.inference import LatentCodec
from latentdex.models.training import TrainConfig, train
from latentdex.models.vae import VAEConfig
from latentdex.service.latent_features import GroupSpec, LatentExplorer
from latentdex.service.live_store import LiveStore
from latentdex.service.queries import LatentQuery, QueryEngine, QuerySpec

TINY = VAEConfig(image_size=32, latent_dim=8, channels=(8, 16, 16), groups=4)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A parent model, its decoder-only child and grandchild, and an unrelated model, saved to disk."""
    root = tmp_path_factory.mktemp("lineage")
    photos = root / "train"
    write_image_folder(photos, sources=8, per_source=2, size=40)
    data = load_training_set(photos, image_size=32, holdout_fraction=0.2, workers=1)
    quick = TrainConfig(epochs=1, batch_size=4, warmup_steps=1)
    parent = train(data.train, data.holdout, root / "parent", TINY, quick)
    decoder = TrainConfig(epochs=1, batch_size=4, warmup_steps=1, decoder_only=True, learning_rate=3e-3)
    with pytest.raises(ValueError, match="decoder-only"):
        train(data.train, data.holdout, root / "bad", TINY, quick, same_latents_as=[parent.model_id])
    child = train(
        data.train,
        data.holdout,
        root / "child",
        TINY,
        decoder,
        init=parent.model,
        same_latents_as=[parent.model_id],
    )
    train(
        data.train,
        data.holdout,
        root / "grandchild",
        TINY,
        decoder,
        init=child.model,
        same_latents_as=[child.model_id, parent.model_id],
    )
    train(data.train, data.holdout, root / "other", TINY, TrainConfig(epochs=1, batch_size=4, seed=9))
    return {
        "parent": root / "parent",
        "child": root / "child",
        "grandchild": root / "grandchild",
        "other": root / "other",
    }


def codec(directory: Path) -> LatentCodec:
    return LatentCodec(*load_model(directory))


def test_the_lineage_travels_with_the_model_and_names_the_latents(models: dict[str, Path]) -> None:
    parent, child, grandchild = (read_card(models[name]) for name in ("parent", "child", "grandchild"))
    assert parent.same_latents_as == () and parent.latent_space_id == parent.model_id
    assert child.same_latents_as == (parent.model_id,) and child.latent_space_id == parent.model_id
    assert grandchild.same_latents_as == (child.model_id, parent.model_id)
    assert grandchild.latent_space_id == parent.model_id
    assert child.model_id != parent.model_id  # the decoder changed, so the model did
    assert grandchild.reads_latents_of(parent.model_id) and grandchild.reads_latents_of(child.model_id)
    assert not parent.reads_latents_of(child.model_id)  # the lineage runs one way
    assert not child.reads_latents_of(read_card(models["other"]).model_id)
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(
        codec(models["parent"]).encode(images), codec(models["grandchild"]).encode(images)
    )


@pytest.mark.parametrize(
    ("lineage", "reason"), [(["not-an-id"], "not a model id"), (["vae-0123456789abcdef"] * 2, "repeats")]
)
def test_a_bad_lineage_is_refused(
    models: dict[str, Path], tmp_path: Path, lineage: list[str], reason: str
) -> None:
    model, _ = load_model(models["child"])
    save_model(model, tmp_path / "m")
    config = tmp_path / "m" / "config.json"
    document = json.loads(config.read_text())
    document["same_latents_as"] = lineage
    config.write_text(json.dumps(document))
    with pytest.raises(BadCheckpoint, match=reason):
        read_card(tmp_path / "m")
    document["same_latents_as"] = [document["model_id"]]
    config.write_text(json.dumps(document))
    with pytest.raises(BadCheckpoint, match="repeats"):
        read_card(tmp_path / "m")


def test_a_store_made_with_the_parent_is_searched_and_extended_by_a_child_without_re_encoding(
    models: dict[str, Path], tmp_path: Path
) -> None:
    photos, store_dir = tmp_path / "photos", tmp_path / "store"
    write_image_folder(photos, sources=6, per_source=2, size=40)
    parent, grandchild = codec(models["parent"]), codec(models["grandchild"])
    index_folder(photos, store_dir, parent, IndexOptions(workers=1))
    write_image_folder(tmp_path / "more", sources=2, per_source=1, size=40)
    for path in (tmp_path / "more").iterdir():
        path.rename(photos / f"new-{path.name}")
    report = index_folder(photos, store_dir, grandchild, IndexOptions(workers=1))
    assert (report.counts.unchanged, report.counts.new) == (12, 2)  # nothing re-encoded
    with LatentStore.open(store_dir, read_only=True) as store:
        assert store.model_id == parent.model_id and store.count() == 14
        assert store.verify().ok
    live = LiveStore(store_dir)
    try:
        engine = QueryEngine(grandchild, live)
        with live.use() as store:
            stored = store.latents([1])[0]
        [answer] = engine.query([LatentQuery(stored)], QuerySpec(k=3))
        # new-src0__0.png is src0__0.png again: the child's latent of it is the parent's, at distance 0
        top = {hit.record.path: hit.distance for hit in answer.hits[:2]}
        assert top.keys() == {"src0__0.png", "new-src0__0.png"} and max(top.values()) < 1e-5
        assert answer.model_id == grandchild.model_id
        explorer = LatentExplorer(engine)
        explorer.create_direction("left", GroupSpec(ids=(1, 2, 3)), GroupSpec(ids=(4, 5, 6)))
        assert [d.name for d in explorer.list_directions()] == ["left"]
        assert [d.name for d in LatentExplorer(QueryEngine(parent, live)).list_directions()] == ["left"]
        with pytest.raises(ModelMismatch):
            QueryEngine(codec(models["other"]), live).query([LatentQuery(stored)], QuerySpec(k=3))
    finally:
        live.close()
    with pytest.raises(ModelMismatch, match="re-encode"):
        index_folder(photos, store_dir, codec(models["other"]), IndexOptions(workers=1))
    assert report.counts.failed == 0
