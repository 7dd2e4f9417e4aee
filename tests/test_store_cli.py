"""The store commands of `latentdex`: index, stats, verify, export and import, through typer's CliRunner."""

from __future__ import annotations

import sys
from pathlib import Path

import faiss
import numpy as np
import pytest
from indexing_support import save_tiny_model, write_photos
from typer.testing import CliRunner

from latentdex.indexer.store import LatentStore
from latentdex.indexer.vectors import VectorIndex
from latentdex.service.cli import app, main

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory, model: Path) -> tuple[Path, Path, str]:
    """A folder of 6 photos and one bad file (a newline in its name), indexed by `latentdex index`; and
    that command's output."""
    root = tmp_path_factory.mktemp("indexed")
    write_photos(root / "photos", 6)
    (root / "photos" / "bad\nname.jpg").write_text("not a jpeg")
    result = runner.invoke(app, index_args(root / "photos", root / "store", model))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return root / "photos", root / "store", result.output


def index_args(photos: Path, store: Path, model: Path, *extra: str) -> list[str]:
    return ["index", str(photos), "--store", str(store), "--model", str(model), "--workers", "1", *extra]


def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str]:
    """Run the console entry point in-process; return its exit code and stderr."""
    monkeypatch.setattr(sys, "argv", ["latentdex", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0), capsys.readouterr().err


def test_help_lists_the_store_commands() -> None:
    result = runner.invoke(app, ["--help"])
    for command in ("index", "stats", "verify", "export", "import"):
        assert command in result.stdout


def test_index_prints_a_summary_with_every_failure(indexed: tuple[Path, Path, str]) -> None:
    _, _, output = indexed
    assert "run 1 complete" in output
    assert "6 new, 0 changed, 0 unchanged, 0 moved, 0 deleted, 1 failed" in output
    assert "images/s" in output
    assert "failed (1):\n  bad\\nname.jpg: not a supported image format\n" in output  # one line, escaped


def test_index_again_changes_nothing(indexed: tuple[Path, Path, str], model: Path, tmp_path: Path) -> None:
    photos, store, _ = indexed
    metrics = tmp_path / "textfile" / "latentdex.prom"
    result = runner.invoke(app, index_args(photos, store, model, "--metrics-file", str(metrics)))
    assert result.exit_code == 0, result.output
    assert "0 new, 0 changed, 6 unchanged, 0 moved, 0 deleted, 1 failed" in result.output
    # the run's figures, for node_exporter's textfile collector
    lines = dict(line.rsplit(" ", 1) for line in metrics.read_text().splitlines() if not line.startswith("#"))
    assert float(lines['latentdex_indexer_images{outcome="unchanged"}']) == 6
    assert float(lines['latentdex_indexer_images{outcome="failed"}']) == 1
    assert float(lines["latentdex_indexer_interrupted"]) == 0
    assert float(lines["latentdex_indexer_last_run_timestamp_seconds"]) > 1.7e9


def test_stats_prints_totals_model_index_disk_and_runs(indexed: tuple[Path, Path, str], model: Path) -> None:
    _, store, _ = indexed
    result = runner.invoke(app, ["stats", str(store)])
    assert result.exit_code == 0, result.output
    with LatentStore.open(store, read_only=True) as opened:
        model_id, size = opened.model_id, opened.disk_bytes()
        runs = opened.runs()
    lines = result.output.splitlines()
    assert f"model:       {model_id} (latent dim 8)" in lines
    assert "metric:      whitened" in lines
    assert "whitening:   not fitted yet: needs 16 images, has 6 (cosine on mu until then)" in lines
    assert "index:       flat (configured: flat)" in lines
    assert "images:      6 ok, 1 failed" in lines
    assert "hashes:      6 of 6 ok images have perceptual hashes" in lines
    assert f"on disk:     {size:,} bytes" in lines and size > 0
    run_lines = [line for line in lines if line.startswith("  run ")]
    assert (
        len(run_lines) == len(runs)
        and "new 6 changed 0 unchanged 0 moved 0 deleted 0 failed 1" in run_lines[0]
    )


def test_verify_is_ok_then_reports_and_repairs_an_orphan_vector(
    tmp_path: Path,
    indexed: tuple[Path, Path, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = tmp_path / "store"  # a copy, so the module's store stays as indexed
    copied = runner.invoke(app, ["import", str(export_to(tmp_path, indexed[1])), "--store", str(store)])
    assert copied.exit_code == 0, copied.output
    result = runner.invoke(app, ["verify", str(store)])
    assert result.exit_code == 0 and "consistent: 6 ok images with one vector each, 0 failed" in result.output
    faiss.omp_set_num_threads(1)
    index = VectorIndex.load(store / "vectors.faiss", "cosine")
    index.add(np.array([999]), np.ones((1, 8), np.float32))  # saved behind the store's back
    index.save(store / "vectors.faiss")
    checked = runner.invoke(app, ["verify", str(store), "--read-only"])
    assert checked.exit_code == 7, checked.output
    assert "NOT consistent" in checked.output and "vectors have no ok image: ids [999]" in checked.output
    assert run_main(monkeypatch, capsys, "verify", str(store), "--read-only")[0] == 7  # the real entry point
    repaired = runner.invoke(app, ["verify", str(store)])
    assert repaired.exit_code == 0, repaired.output
    assert "repaired first" in repaired.output and "consistent: 6 ok images" in repaired.output


def export_to(tmp_path: Path, store: Path) -> Path:
    out = tmp_path / "export.npz"
    result = runner.invoke(app, ["export", str(store), "--out", str(out)])
    assert result.exit_code == 0 and f"exported 6 images to {out}" in result.output, result.output
    return out


def test_export_holds_ids_paths_metadata_and_latents_and_imports_back(
    tmp_path: Path, indexed: tuple[Path, Path, str]
) -> None:
    _, store, _ = indexed
    out = export_to(tmp_path, store)
    with LatentStore.open(store, read_only=True) as opened:
        records = {r.id: r for r in opened.get([e.id for e in opened.entries() if e.status == "ok"])}
        latents = opened.latents(list(records))
        model_id = opened.model_id
    with np.load(out, allow_pickle=False) as data:
        assert str(data["model_id"]) == model_id and int(data["latent_dim"]) == 8
        assert data["ids"].tolist() == list(records)
        assert [p.decode() for p in data["paths"]] == [r.path for r in records.values()]
        assert data["widths"].tolist() == [40] * 6 and set(data["formats"].tolist()) == {"PNG"}
        assert data["content_hashes"].tolist() == [r.content_hash for r in records.values()]
        assert np.array_equal(data["latents"], latents)
    copy = tmp_path / "copy"
    result = runner.invoke(app, ["import", str(out), "--store", str(copy)])
    assert result.exit_code == 0 and "imported 6 images" in result.output, result.output
    with LatentStore.open(copy, read_only=True) as imported:
        assert imported.model_id == model_id and imported.verify().ok
        for record, latent in zip(records.values(), latents, strict=True):
            again = imported.get_by_path(record.path)
            assert (again.content_hash, again.width, again.size) == (record.content_hash, 40, record.size)
            assert imported.search(latent[None], 1)[0][0].id == again.id


def test_a_store_of_another_model_exits_9_and_says_to_reencode(
    tmp_path: Path,
    model: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    photos, store = tmp_path / "photos", tmp_path / "store"
    write_photos(photos, 3)
    assert runner.invoke(app, index_args(photos, store, model)).exit_code == 0
    other = save_tiny_model(tmp_path / "other", seed=3)
    code, err = run_main(monkeypatch, capsys, *index_args(photos, store, other))
    assert code == 9 and "Pass --reencode" in err and err.startswith("error: ")
    result = runner.invoke(app, index_args(photos, store, other, "--reencode"))
    assert result.exit_code == 0, result.output
    assert "0 new, 3 changed, 0 unchanged" in result.output


def test_store_and_folder_errors_have_their_exit_codes(
    tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = run_main(monkeypatch, capsys, "stats", str(tmp_path / "nothing"))
    assert code == 8 and "does not exist" in err
    code, err = run_main(monkeypatch, capsys, *index_args(tmp_path / "no-photos", tmp_path / "s", model))
    assert code == 6 and "photos folder" in err
    assert not (tmp_path / "s").exists()


def test_a_memory_budget_is_kept_by_the_store_and_explained_by_stats(
    tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("latentdex.indexer.vectors.AUTO_FLAT_BELOW", 2)  # 6 photos call for HNSW
    write_photos(tmp_path / "photos", 6)
    args = index_args(tmp_path / "photos", tmp_path / "store", model, "--index-type", "auto")
    result = runner.invoke(app, [*args, "--max-index-memory", "1KB"])
    assert result.exit_code == 0, result.output
    assert "over the 1.0 KB budget; too few images for ivfpq" in result.output
    result = runner.invoke(app, ["stats", str(tmp_path / "store")])
    assert "index:       hnsw (configured: auto)" in result.output
    assert "budget 1.0 KB" in result.output
    result = runner.invoke(app, ["rebuild", str(tmp_path / "store"), "--max-index-memory", "0"])
    assert result.exit_code == 0, result.output
    assert "no memory budget" in runner.invoke(app, ["stats", str(tmp_path / "store")]).output


def test_a_malformed_memory_budget_is_a_usage_error(tmp_path: Path, model: Path) -> None:
    write_photos(tmp_path / "photos", 1)
    args = index_args(tmp_path / "photos", tmp_path / "store", model, "--max-index-memory", "lots")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "not a size" in result.output
    assert not (tmp_path / "store").exists()
