"""`latentdex duplicates STORE`: the near-duplicate groups of a store, as text, JSON, a sheet or a script.

Nothing is deleted. `--emit-script` writes a shell script that moves every copy but each group's
suggested keeper into a review folder, for the user to read and run.
"""

from __future__ import annotations

import json
import os
import shlex
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from latentdex.atomic_files import write_bytes_atomic
from latentdex.service.cli.progress import progress_bar
from latentdex.service.contact_sheet import SheetTile, group_rows
from latentdex.service.previews import original_file, thumbnail_picture

if TYPE_CHECKING:
    from latentdex.indexer.duplicates import DuplicateGroup, DuplicateReport

Preset = Literal["exact", "near", "similar"]
SHEET_GROUPS = 50  # groups drawn on a sheet (the largest)


def duplicates(
    store: Annotated[Path, typer.Argument(help="Store folder.")],
    preset: Annotated[
        Preset | None,
        typer.Option(
            help="exact: same file content; near (default): re-encodes, resizes, crops; similar: more edits."
        ),
    ] = None,
    threshold: Annotated[
        float | None, typer.Option(min=0.0, help="A distance threshold instead of a preset.")
    ] = None,
    path_prefix: Annotated[str | None, typer.Option(help="Only images under this relative path.")] = None,
    after: Annotated[datetime | None, typer.Option(help="Only photos captured at or after.")] = None,
    before: Annotated[datetime | None, typer.Option(help="Only photos captured before.")] = None,
    image_format: Annotated[
        list[str] | None, typer.Option("--format", help="Only these file formats; repeatable.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the groups as JSON.")] = False,
    sheet: Annotated[Path | None, typer.Option(help="Draw each group as a row of thumbnails (PNG).")] = None,
    emit_script: Annotated[
        Path | None, typer.Option(help="Write a script that moves every non-keeper to a review folder.")
    ] = None,
    check_files: Annotated[
        bool,
        typer.Option(
            help="Read the files of candidate pairs to find crops, captions and borders (the presets' "
            "region check; what pairs gave is kept in the catalog, so a later run reads only the files of "
            "new pairs); --no-check-files: latents and hashes alone."
        ),
    ] = True,
) -> None:
    """Find groups of near-duplicates (copies, re-encodes, resizes, light edits), largest first, each
    with a suggested keeper: most pixels, then the oldest capture time, then the shortest path."""
    from latentdex.indexer.duplicates import find_duplicates, resolve_hash_rule, resolve_threshold
    from latentdex.indexer.search_filter import SearchFilter
    from latentdex.indexer.store import LatentStore
    from latentdex.service.duplicate_files import region_check

    where = SearchFilter(
        path_prefix=path_prefix,
        captured_after=after,
        captured_before=before,
        formats=frozenset(image_format or ()),
    )
    with LatentStore.open(store, read_only=True) as opened:
        limit = resolve_threshold(preset, threshold, opened.distance_space)
        hash_rule = resolve_hash_rule(preset, threshold, opened.distance_space)
        root = opened.indexed_root()
        regions = region_check(
            preset,
            threshold,
            opened.distance_space,
            root,
            check_files,
            threads=os.cpu_count() or 1,
            remember=True,
        )
        with progress_bar("img", stderr=True) as bar:
            task = bar.add_task("searching", total=opened.vector_count, status="")
            if regions is not None:
                files = bar.add_task("comparing files", total=None, status="candidate pairs")
                regions.progress = lambda done, total: bar.update(files, completed=done, total=total)
            report = find_duplicates(
                opened,
                limit,
                where,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
                hash_rule=hash_rule,
                regions=regions,
            )
        space = opened.distance_space
    name = preset or ("threshold" if threshold is not None else "near")
    if as_json:
        typer.echo(json.dumps(report_json(report, name, space), indent=2))
    else:
        _print_report(report, name, space)
    if sheet is not None:
        _write_sheet(report.groups[:SHEET_GROUPS], root, sheet)
        typer.echo(f"sheet: {sheet}", err=as_json)
    if emit_script is not None:
        write_bytes_atomic(emit_script, review_script(report, root, store).encode("utf-8", "surrogateescape"))
        emit_script.chmod(0o755)
        typer.echo(
            f"script: {emit_script} (moves {_copies(report)} copies when run; nothing is deleted)",
            err=as_json,
        )


def report_json(report: DuplicateReport, preset: str, space: str) -> dict[str, Any]:
    return {
        "preset": preset,
        "threshold": report.threshold,
        "distance": space,
        "hash_rule": None if report.hash_rule is None else asdict(report.hash_rule),
        "region_check": _region_json(report),
        "images_scanned": report.images_scanned,
        "groups_found": len(report.groups),
        "images_in_groups": report.images_in_groups,
        "seconds": round(report.seconds, 3),
        "groups": [
            {
                "keeper": group.ids[0],
                "exact": group.exact,
                "members": [
                    {
                        "id": record.id,
                        "path": record.display_path,
                        "distance": round(group.distances[record.id or 0], 6),
                        "width": record.width,
                        "height": record.height,
                        "size": record.size,
                        "capture_time": record.capture_time.isoformat() if record.capture_time else None,
                        "content_hash": record.content_hash,
                    }
                    for record in group.members
                ],
                "pairs": [[a, b, round(d, 6)] for a, b, d in group.pairs],
            }
            for group in report.groups
        ],
    }


def _region_json(report: DuplicateReport) -> dict[str, Any] | None:
    check = report.regions
    if check is None:
        return None
    return {
        "rule": asdict(check.rule),
        "pairs_checked": check.pairs_checked,
        "pairs_remembered": check.pairs_remembered,
        "pairs_linked": check.pairs_linked,
        "files_read": check.files_read,
        "files_unreadable": check.files_unreadable,
        "seconds": round(check.seconds, 3),
    }


def review_script(report: DuplicateReport, root: Path | None, store: Path) -> str:
    """A POSIX shell script that moves each group's non-keepers (paths kept) into the folder given as
    its first argument."""
    lines = [
        "#!/bin/sh",
        f"# Near-duplicates found by `latentdex duplicates` in {store} "
        f"(threshold {report.threshold}), {datetime.now().isoformat(timespec='seconds')}.",
        "# Nothing has been deleted. This script moves every copy that is not its group's suggested keeper",
        "# into the review folder given as its first argument, keeping its path. Read it before running it.",
        "set -eu",
        'review="${1:?usage: sh this-script REVIEW_FOLDER}"',
        'case "$review" in /*) ;; *) review="$PWD/$review" ;; esac',
        f"cd {shlex.quote(str(root or '.'))}",
    ]
    for number, group in enumerate(report.groups, 1):
        lines.append(f"# group {number}: keep {shlex.quote(group.keeper.path)}")
        for record in group.members[1:]:
            folder = str(Path(record.path).parent)
            lines.append(
                f'mkdir -p "$review"/{shlex.quote(folder)} && mv -n -- {shlex.quote(record.path)} '
                f'"$review"/{shlex.quote(record.path)}'
            )
    return "\n".join(lines) + "\n"


def _print_report(report: DuplicateReport, preset: str, space: str) -> None:
    limit = "same content only" if report.threshold is None else f"{space} distance <= {report.threshold:g}"
    if report.hash_rule is not None:
        rule = report.hash_rule
        limit += (
            f"; with perceptual hashes: distance <= {rule.latent_threshold:g}, or pHash within "
            f"{rule.max_bits} bits and distance <= {rule.max_distance:g}"
        )
    check = report.regions
    if check is not None:
        limit += (
            f"; region check: {check.pairs_checked} candidate pairs compared by their files"
            + (f", {check.pairs_remembered} known from before" if check.pairs_remembered else "")
            + f", {check.pairs_linked} linked ({check.seconds:.1f} s"
            + (f", {check.files_unreadable} files not readable" if check.files_unreadable else "")
            + ")"
        )
    typer.echo(
        f"{report.images_scanned} images, {preset} ({limit}): {len(report.groups)} groups, "
        f"{report.images_in_groups} images in them, {_copies(report)} copies beside their keepers "
        f"({report.seconds:.1f} s)"
    )
    for number, group in enumerate(report.groups, 1):
        kind = "exact copies" if group.exact else "near-duplicates"
        typer.echo(f"group {number}: {len(group.members)} {kind}")
        for index, record in enumerate(group.members):
            mark = "keep" if index == 0 else f"{group.distances[record.id or 0]:.4f}"
            size = f"{record.width or 0}x{record.height or 0}"
            taken = record.capture_time.strftime("%Y-%m-%d %H:%M") if record.capture_time else "-"
            typer.echo(f"  {mark:>6}  id {record.id:<6} {size:>11}  {taken:16}  {record.display_path}")


def _write_sheet(groups: list[DuplicateGroup], root: Path | None, out: Path) -> None:
    rows = []
    for group in groups:
        row = []
        for index, record in enumerate(group.members):
            path = original_file(root, record.path) if root is not None else None
            picture = thumbnail_picture(path, "JPEG", 128) if path is not None else None
            mark = "keep" if index == 0 else f"d={group.distances[record.id or 0]:.4f}"
            row.append(SheetTile(picture.data if picture else None, None, f"{mark}\n{record.display_path}"))
        rows.append(row)
    if rows:
        group_rows(rows).save(out)


def _copies(report: DuplicateReport) -> int:
    return sum(len(group.members) - 1 for group in report.groups)
