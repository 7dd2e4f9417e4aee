"""The latent-space commands on a local store (`--store`: a private in-process server), writing real files."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import shape_image
from PIL import Image
from typer.testing import CliRunner

from latentdex.indexer.pipeline import IndexOptions, index_folder
from latentdex.models.inference import LatentCodec
from latentdex.service.cli import app

runner = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("latent-cli")
    for folder, offset in (("day", 0), ("night", 50)):
        (root / "photos" / folder).mkdir(parents=True)
        for i in range(8):
            shape_image(offset + i, i % 3, 64).save(root / "photos" / folder / f"{folder}{i}.png")
    index_folder(root / "photos", root / "store", LatentCodec.load(), IndexOptions(workers=1))
    return root / "store"


def run(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_generate_and_interpolate_write_sheets_and_animations(store: Path, tmp_path: Path) -> None:
    out = run(
        "generate", "--store", str(store), "--out", str(tmp_path / "gen.png"), "--count", "5", "--seed", "3"
    )
    assert "5 samples" in out
    with Image.open(tmp_path / "gen.png") as sheet:
        assert sheet.width > 4 * 128
    photo = store.parent / "photos" / "day" / "day1.png"
    out = run(
        "interpolate",
        str(photo),
        "id:12",
        "--store",
        str(store),
        "--out",
        str(tmp_path / "walk.gif"),
        "--steps",
        "5",
    )
    assert out.splitlines()[0] == "t=0.00  nearest day/day1.png"
    with Image.open(tmp_path / "walk.gif") as strip:
        assert strip.n_frames == 8  # 5 frames there and 3 back
    run(
        "interpolate",
        "id:1",
        "id:2",
        "--store",
        str(store),
        "--out",
        str(tmp_path / "walk.webp"),
        "--steps",
        "3",
    )
    with Image.open(tmp_path / "walk.webp") as strip:
        assert strip.format == "WEBP" and strip.n_frames == 4


def test_directions_edit_traverse_map_and_stats(store: Path, tmp_path: Path) -> None:
    created = run(
        "direction",
        "create",
        "nightly",
        "--positive",
        "night/*",
        "--negative",
        "day/*",
        "--store",
        str(store),
    )
    assert created.startswith("nightly:") and "8 vs 8 images" in created
    assert "nightly" in run("direction", "list", "--store", str(store))
    edited = run(
        "edit",
        "id:3",
        "--direction",
        "nightly",
        "--strength",
        "-1",
        "--strength",
        "1",
        "--store",
        str(store),
        "--out",
        str(tmp_path / "edit.png"),
    )
    assert "strength -1.00:" in edited and "strength +1.00:" in edited
    assert (tmp_path / "edit.png").stat().st_size > 0
    run("traverse", "id:3", "--top", "3", "--store", str(store), "--out", str(tmp_path / "traverse.png"))
    with Image.open(tmp_path / "traverse.png") as grid:
        assert grid.size == (5 * 96, 3 * (96 + 14))
    run(
        "map",
        "--columns",
        "4",
        "--rows",
        "3",
        "--cell",
        "32",
        "--store",
        str(store),
        "--out",
        str(tmp_path / "map.png"),
    )
    with Image.open(tmp_path / "map.png") as atlas:
        assert atlas.size == (128, 96)
    stats = run("latent-stats", "--show", "2", "--store", str(store))
    assert stats.startswith("16 images;") and stats.count("  dim ") == 2
    run("direction", "delete", "nightly", "--store", str(store))
    result = runner.invoke(
        app,
        ["edit", "id:3", "--direction", "nightly", "--store", str(store), "--out", str(tmp_path / "x.png")],
    )
    assert result.exit_code != 0 and "no direction named 'nightly'" in str(result.exception or result.output)


def test_a_source_must_be_a_file_or_an_id(store: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["traverse", "nope.png", "--store", str(store), "--out", str(tmp_path / "t.png")]
    )
    assert result.exit_code == 2 and "not a file" in result.output
