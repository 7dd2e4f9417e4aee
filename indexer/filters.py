"""Metadata filters for a search: which stored images a query may return.

A `SearchFilter` becomes one SQL query over the catalog that yields the ids of the ok images it admits;
the vector search then looks only at those (`LatentStore.search`), so k filtered matches come back
whenever the store holds k images that pass.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from latentdex.indexer.catalog import ImageRow
from latentdex.indexer.relative_paths import path_key
from latentdex.indexer.search_filter import SearchFilter


def filter_conditions(search_filter: SearchFilter) -> list[ColumnElement[bool]]:
    """The SQL conditions of `search_filter` (empty if it has none)."""
    out: list[ColumnElement[bool]] = []
    if search_filter.path_prefix:
        prefix = path_key(search_filter.path_prefix)
        out.append(func.substr(ImageRow.path_bytes, 1, len(prefix)) == prefix)
    if search_filter.captured_after is not None:
        out.append(ImageRow.capture_time >= search_filter.captured_after)
    if search_filter.captured_before is not None:
        out.append(ImageRow.capture_time < search_filter.captured_before)
    if search_filter.min_width:
        out.append(ImageRow.width >= search_filter.min_width)
    if search_filter.min_height:
        out.append(ImageRow.height >= search_filter.min_height)
    if search_filter.formats:
        out.append(func.upper(ImageRow.format).in_(sorted(search_filter.formats)))
    return out


def matching_ids(session: Session, search_filter: SearchFilter) -> np.ndarray:
    """The ids (int64, ascending) of the ok images that pass `search_filter`."""
    conditions = [ImageRow.status == "ok", *filter_conditions(search_filter)]
    query = select(ImageRow.id).where(*conditions).order_by(ImageRow.id)
    return np.fromiter(session.scalars(query), dtype=np.int64)


def page_of_ids(
    session: Session, search_filter: SearchFilter, after_id: int, limit: int
) -> tuple[np.ndarray, int]:
    """Up to `limit` ids (ascending) of the ok images passing `search_filter` with an id above `after_id`,
    and how many ok images pass it in all."""
    conditions = [ImageRow.status == "ok", *filter_conditions(search_filter)]
    page = select(ImageRow.id).where(*conditions, ImageRow.id > after_id).order_by(ImageRow.id).limit(limit)
    total = session.scalar(select(func.count()).select_from(ImageRow).where(*conditions)) or 0
    return np.fromiter(session.scalars(page), dtype=np.int64), int(total)


def same_hash_groups(session: Session, search_filter: SearchFilter) -> list[list[int]]:
    """The ids (ascending) of each set of two or more ok images passing `search_filter` whose files have
    the same content hash."""
    conditions = [ImageRow.status == "ok", *filter_conditions(search_filter)]
    repeated = (
        select(ImageRow.content_hash)
        .where(*conditions)
        .group_by(ImageRow.content_hash)
        .having(func.count() > 1)
        .subquery()
    )
    query = (
        select(ImageRow.content_hash, ImageRow.id)
        .where(*conditions, ImageRow.content_hash.in_(select(repeated.c.content_hash)))
        .order_by(ImageRow.content_hash, ImageRow.id)
    )
    groups: dict[str, list[int]] = {}
    for content_hash, image_id in session.execute(query):
        groups.setdefault(content_hash, []).append(int(image_id))
    return list(groups.values())


def glob_ids(session: Session, patterns: Sequence[str]) -> np.ndarray:
    """The ids (int64, ascending) of the ok images whose relative path matches any glob pattern
    (`*`, `?`, `[...]`, `[!...]`; case-sensitive, `*` also crosses `/`, as SQLite's GLOB)."""
    if not patterns:
        return np.empty(0, dtype=np.int64)
    if session.get_bind().dialect.name == "sqlite":
        matches = or_(*(ImageRow.path.op("GLOB")(pattern) for pattern in patterns))
    else:  # PostgreSQL: the same patterns as anchored POSIX regular expressions
        matches = or_(*(ImageRow.path.op("~")(glob_to_regex(pattern)) for pattern in patterns))
    query = select(ImageRow.id).where(ImageRow.status == "ok", matches).order_by(ImageRow.id)
    return np.fromiter(session.scalars(query), dtype=np.int64)


def glob_to_regex(pattern: str) -> str:
    """A glob pattern as an anchored POSIX regular expression matching the same strings as SQLite's GLOB."""
    out, i = ["^"], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif (
            char == "["
            and (end := pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "^") else i + 1)) > i
        ):
            body = pattern[i + 1 : end]
            negated = body[:1] in ("!", "^")
            body = body[1:] if negated else body
            out.append("[" + ("^" if negated else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(char))
        i += 1
    return "".join(out) + "$"
