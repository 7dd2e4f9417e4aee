"""Plain-text tables for the terminal and the JSON result files the benchmarks write."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Cell = str | int | float | None


def fmt(value: Cell, digits: int = 3) -> str:
    """A table cell: floats with `digits` significant-ish decimals, None as a dash."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        magnitude = abs(value)
        if magnitude >= 1000:
            return f"{value:,.0f}"
        if magnitude >= 100:
            return f"{value:.1f}"
        return f"{value:.{digits}f}" if magnitude < 10 else f"{value:.2f}"
    return str(value)


def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Cell]]) -> str:
    """A left-aligned first column, right-aligned other columns, with a title line and a rule."""
    cells = [list(headers)] + [[fmt(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        return "  ".join(parts).rstrip()

    rule = "-" * len(line(cells[0]))
    return "\n".join([title, rule, line(cells[0]), rule, *(line(r) for r in cells[1:]), rule])


def write_result(results_dir: Path, name: str, header: dict[str, Any], result: dict[str, Any]) -> Path:
    """Write `results_dir`/`name`.json: `header` (machine facts, model id, mode ...) then `result`."""
    results_dir.mkdir(parents=True, exist_ok=True)
    document = {"benchmark": name, **header, **result}
    path = results_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(
        json.dumps(document, indent=2, sort_keys=False, default=_jsonable) + "\n", encoding="utf-8"
    )
    tmp.replace(path)
    return path


def _jsonable(value: object) -> object:
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()  # type: ignore[no-any-return, attr-defined]
    if hasattr(value, "tolist"):
        return value.tolist()  # type: ignore[no-any-return, attr-defined]
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
