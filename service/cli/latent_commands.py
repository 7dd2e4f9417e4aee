"""`latentdex generate`, `interpolate`, `edit`, `direction`, `traverse`, `map`, `latent-stats`: the latent
space from the command line, through a server (`--server`) or a local store (`--store`).

Images are given as a file path, or as `id:N` for an indexed image. Outputs ending in `.gif` or `.webp` are
animated strips; anything else a PNG sheet with each frame's nearest real photo beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from latentdex.service.cli.connection import ServerOption, StoreOption, TimeoutOption, TokenOption, connected
from latentdex.service.cli.model_commands import ModelOption
from latentdex.service.strips import write_frames, write_grid

if TYPE_CHECKING:
    from latentdex.service.client import FrameOptions, ImageGroup, QueryInput

SourceArgument = Annotated[str, typer.Argument(help="An image file, or id:N for an indexed image.")]
OutOption = Annotated[Path, typer.Option("--out", help="PNG sheet, or .gif / .webp for an animated strip.")]
NearestOption = Annotated[int, typer.Option(min=0, help="Nearest real photos to find per frame.")]
SizeOption = Annotated[int, typer.Option(min=0, help="Frame size in pixels (0: the model's).")]

direction_app = typer.Typer(
    help="Named latent directions: create from two groups, list, delete.", no_args_is_help=True
)


def source_of(text: str) -> QueryInput:
    """`id:N` -> N; anything else is a path to an image file (which must exist)."""
    if text.startswith("id:"):
        try:
            return int(text[3:])
        except ValueError:
            raise typer.BadParameter(f"{text!r}: id: must be followed by a number") from None
    path = Path(text)
    if not path.is_file():
        raise typer.BadParameter(f"{text!r} is not a file (use id:N for an indexed image)")
    return path


def _frame_options(nearest: int, size: int) -> FrameOptions:
    from latentdex.service.client import FrameOptions

    return FrameOptions(size=size, nearest_k=nearest, thumbnails=nearest > 0)


def generate(
    out: OutOption,
    count: Annotated[int, typer.Option(min=1, max=64, help="How many images.")] = 8,
    temperature: Annotated[float, typer.Option(help="Spread of the samples (1: as the source).")] = 1.0,
    seed: Annotated[int | None, typer.Option(help="Seed, for reproducible samples.")] = None,
    around: Annotated[str | None, typer.Option(help="Sample around this image (path or id:N).")] = None,
    spread: Annotated[float, typer.Option(help="Spread around --around, in posterior deviations.")] = 1.0,
    source: Annotated[
        Literal["auto", "prior", "library"],
        typer.Option(help="prior: N(0, I); library: a Gaussian fitted to the store; auto: library if any."),
    ] = "auto",
    nearest: NearestOption = 1,
    size: SizeOption = 0,
    server: ServerOption = None,
    store: StoreOption = None,
    model: ModelOption = None,
    token: TokenOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Decode new latents (from the prior, like the library, or around an image) into a sheet or strip."""
    with connected(server, store, model, token=token, timeout=timeout) as client:
        frames = client.generate(
            count,
            temperature=temperature,
            seed=seed,
            around=source_of(around) if around else None,
            spread=spread,
            source=source,
            frames=_frame_options(nearest, size),
        )
    write_frames(frames, out, [f"sample {i + 1}" for i in range(len(frames))], bounce=False)
    typer.echo(f"{len(frames)} samples: {out}")


def interpolate(
    start: SourceArgument,
    end: SourceArgument,
    out: OutOption,
    steps: Annotated[int, typer.Option(min=2, max=256, help="Frames, both ends included.")] = 8,
    method: Annotated[
        Literal["slerp", "linear"], typer.Option(help="Path through the latent space.")
    ] = "slerp",
    nearest: NearestOption = 1,
    size: SizeOption = 0,
    server: ServerOption = None,
    store: StoreOption = None,
    model: ModelOption = None,
    token: TokenOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Walk from START to END through the latent space; each frame decoded, with its nearest photo."""
    with connected(server, store, model, token=token, timeout=timeout) as client:
        frames = client.interpolate(
            source_of(start), source_of(end), steps, method=method, frames=_frame_options(nearest, size)
        )
    write_frames(frames, out, [f"t = {f.position:.2f}" for f in frames])
    for frame in frames:
        near = f"  nearest {frame.nearest[0].path}" if frame.nearest else ""
        typer.echo(f"t={frame.position:.2f}{near}")
    typer.echo(f"{len(frames)} frames: {out}")


def edit(
    image: SourceArgument,
    direction: Annotated[str, typer.Option(help="Name of a direction (see `latentdex direction list`).")],
    out: OutOption,
    strength: Annotated[
        list[float] | None, typer.Option(help="Strength; repeat for a strip (default -2 -1 0 1 2).")
    ] = None,
    nearest: NearestOption = 3,
    size: SizeOption = 0,
    server: ServerOption = None,
    store: StoreOption = None,
    model: ModelOption = None,
    token: TokenOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Move IMAGE along a named direction at each strength: the edits, and the real photos nearest them."""
    strengths = strength or [-2.0, -1.0, 0.0, 1.0, 2.0]
    with connected(server, store, model, token=token, timeout=timeout) as client:
        frames = client.edit(source_of(image), direction, strengths, frames=_frame_options(nearest, size))
    write_frames(frames, out, [f"{direction} x {f.position:+.1f}" for f in frames])
    for frame in frames:
        near = ", ".join(m.path for m in frame.nearest)
        typer.echo(f"strength {frame.position:+.2f}: {near}")
    typer.echo(f"{len(frames)} edits: {out}")


@direction_app.command("create")
def direction_create(
    name: Annotated[str, typer.Argument(help="Name: letters, digits, '_', '.', '-'.")],
    positive: Annotated[
        list[str], typer.Option(help="Images with more of it: path pattern (e.g. 'beach/*') or id:N; repeat.")
    ],
    negative: Annotated[list[str], typer.Option(help="Images with less of it; as --positive.")],
    method: Annotated[
        Literal["auto", "mean_difference", "probe"],
        typer.Option(help="auto: whichever separates held-out halves of the groups better."),
    ] = "auto",
    replace: Annotated[bool, typer.Option("--replace", help="Replace a direction of that name.")] = False,
    description: Annotated[str, typer.Option(help="A note kept with it.")] = "",
    server: ServerOption = None,
    store: StoreOption = None,
    model: ModelOption = None,
    token: TokenOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Learn a direction from two groups of indexed images and store it in the store's database."""
    with connected(server, store, model, token=token, timeout=timeout) as client:
        info = client.create_direction(
            name, _group(positive), _group(negative), method=method, replace=replace, description=description
        )
    auc = f"held-out AUC {info.separation:.3f}" if info.separation else "groups too small to hold out"
    typer.echo(
        f"{info.name}: {info.method}, {info.positive_count} vs {info.negative_count} images, "
        f"length {info.norm:.3f}, {auc}"
    )


@direction_app.command("list")
def direction_list(
    server: ServerOption = None,
    store: StoreOption = None,
    model: ModelOption = None,
    token: TokenOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """List the directions of the server's model."""
    with connected(server, store, model, token=token, timeout=timeout) as client:
        directions = client.list_directions()
    if not directions:
        typer.echo("no directions yet: `latentdex direction create NAME --positive ... --negative ...`")
    for d in directions:
        auc = f"{d.separation:.3f}" if d.separation else "-"
        groups = f"{d.positive_count:5d} vs {d.negative_count:<5d}"
        typer.echo(f"{d.name:24s} {d.method:16s} {groups} AUC {auc}  {d.description}")


@direction_app.command("delete")
def direction_delete(
    name: Annotated[str, typer.Argument(help="The direction to delete.")],
    server: ServerOption = None,
    store: StoreOption = None,
    model: ModelOption = None,
    token: TokenOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Delete a direction."""
    with connected(server, store, model, token=token, timeout=timeout) as client:
        client.delete_direction(name)
    typer.echo(f"deleted {name}")


def traverse(
    image: SourceArgument,
    out: OutOption,
    top: Annotated[int, typer.Option(min=1, max=32, help="How many of the most active dimensions.")] = 8,
    dimension: Annotated[
        list[int] | None, typer.Option(help="Traverse these dimensions instead; repeat.")
    ] = None,
    value: Annotated[
        list[float] | None,
        typer.Option(help="Offsets in standard deviations; repeat (default -3 -1.5 0 1.5 3)."),
    ] = None,
    server: ServerOption = None,
    store: StoreOption = None,
    model: ModelOption = None,
    token: TokenOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """A sheet of IMAGE moved along single latent dimensions: one row per dimension, most active first."""
    with connected(server, store, model, token=token, timeout=timeout) as client:
        rows = client.traverse(source_of(image), dimensions=dimension or (), top=top, values=value or ())
    write_grid([(f"dimension {d}", frames) for d, frames in rows], out)
    typer.echo(f"{len(rows)} dimensions x {len(rows[0][1]) if rows else 0} values: {out}")


def latent_map(
    out: OutOption,
    columns: Annotated[int, typer.Option(min=2, max=64, help="Grid columns.")] = 16,
    rows: Annotated[int, typer.Option(min=2, max=64, help="Grid rows.")] = 12,
    cell: Annotated[int, typer.Option(min=16, max=256, help="Cell size in pixels.")] = 64,
    decoded: Annotated[
        bool, typer.Option("--decoded", help="Show decoded latents, not the originals.")
    ] = False,
    server: ServerOption = None,
    store: StoreOption = None,
    model: ModelOption = None,
    token: TokenOption = None,
    timeout: TimeoutOption = 120.0,
) -> None:
    """A map of the library: images placed by the two main axes of their latents."""
    with connected(server, store, model, token=token, timeout=timeout) as client:
        library_map = client.render_map(columns, rows, cell, decoded=decoded)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(library_map.atlas.data)
    x, y = library_map.explained
    placed = len(library_map.cells)
    typer.echo(f"{placed} images on a {columns} x {rows} grid (axes: {x:.0%}, {y:.0%} of variance): {out}")


def latent_stats(
    show: Annotated[int, typer.Option(min=1, help="How many dimensions to list.")] = 16,
    server: ServerOption = None,
    store: StoreOption = None,
    model: ModelOption = None,
    token: TokenOption = None,
    timeout: TimeoutOption = 60.0,
) -> None:
    """Which latent dimensions the library uses: variance over the store, most active first."""
    with connected(server, store, model, token=token, timeout=timeout) as client:
        dims, active, count = client.latent_stats()
    typer.echo(f"{count} images; {active} of {len(dims)} dimensions carry >= 1% of the variance")
    total = sum(v for _, _, v in dims) or 1.0
    for dimension, mean, variance in dims[:show]:
        typer.echo(
            f"  dim {dimension:3d}  mean {mean:+.3f}  variance {variance:.4f}  ({variance / total:.1%})"
        )


def _group(items: list[str]) -> ImageGroup:
    from latentdex.service.client import ImageGroup

    ids = [int(item[3:]) for item in items if item.startswith("id:") and item[3:].isdigit()]
    globs = [item for item in items if not (item.startswith("id:") and item[3:].isdigit())]
    return ImageGroup(ids=ids, path_globs=globs)
