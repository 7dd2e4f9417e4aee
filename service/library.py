"""The stored library as something to look through: one image by id, pages of images, the last run.

`LibraryBrowser` works on top of a `QueryEngine` (its model, live store and limits), as the latent-space
features do. Pages are keyed by id (the page token is the last id of the previous page), so an image
indexed or removed while someone pages neither repeats nor shifts the rest.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, replace

from latentdex.errors import InvalidQuery, NoStore, NotFound
from latentdex.indexer.catalog import RunRecord
from latentdex.indexer.search_filter import SearchFilter
from latentdex.service.previews import encode_picture
from latentdex.service.queries import Hit, PreviewSpec, QueryEngine

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
_TOKEN_PREFIX = b"after:"


@dataclass(frozen=True)
class LibraryPage:
    """Images in id order (records only), the token of the next page ("" after the last), and how many
    images pass the filter in all."""

    images: list[Hit]
    next_page_token: str
    total_count: int


class LibraryBrowser:
    def __init__(self, engine: QueryEngine) -> None:
        self.engine = engine

    def image(self, image_id: int, preview: PreviewSpec, include_latent: bool = False) -> Hit:
        """The stored image `image_id` (distance 0), with the decoding of its latent if `preview.matches`,
        a thumbnail of its original if `preview.thumbnails`, and the latent if asked. NotFound if no ok
        image has that id."""
        if preview.matches or preview.thumbnails:
            self.engine.check_preview(preview.format, preview.size)
        with self.engine.current_store() as store:
            rows = store.hits([image_id], with_latents=preview.matches or include_latent)
            if image_id not in rows:
                raise NotFound(f"no indexed image with id {image_id}")
            root = store.indexed_root() if preview.thumbnails else None
        record, latent = rows[image_id]
        hit = Hit(record, 0.0, 0.0, latent if include_latent else None)
        if root is not None:
            [[hit]] = self.engine.with_thumbnails([[hit]], root, preview)
        if preview.matches and latent is not None:
            decoded = self.engine.codec.decode(latent[None])[0]
            hit = replace(hit, preview=encode_picture(decoded, preview.format, preview.size))
        return hit

    def page(self, page_size: int, page_token: str, where: SearchFilter | None) -> LibraryPage:
        """One page of the ok images passing `where`, in id order. InvalidQuery for a page size over
        MAX_PAGE_SIZE or a token this server did not hand out."""
        size = page_size or DEFAULT_PAGE_SIZE
        if not 1 <= size <= MAX_PAGE_SIZE:
            raise InvalidQuery(f"page_size must be between 1 and {MAX_PAGE_SIZE}, got {page_size}")
        after = _token_id(page_token)
        with self.engine.current_store() as store:
            ids, total = store.page_ids(where, after, size + 1)
            records = store.hits(ids[:size].tolist(), with_latents=False)
        hits = [Hit(records[i][0], 0.0, 0.0) for i in ids[:size].tolist() if i in records]
        more = len(ids) > size
        return LibraryPage(hits, _token(int(ids[size - 1])) if more else "", total)

    def last_run(self) -> RunRecord | None:
        """The store's latest indexing run; None without a store or a recorded run."""
        try:
            with self.engine.current_store() as store:
                runs = store.runs()
        except NoStore:
            return None
        return runs[-1] if runs else None


def _token(last_id: int) -> str:
    return base64.urlsafe_b64encode(_TOKEN_PREFIX + str(last_id).encode()).decode()


def _token_id(token: str) -> int:
    """The id a page token continues after (0 for the first page); InvalidQuery for any other string."""
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raw = b""
    digits = raw[len(_TOKEN_PREFIX) :]
    if not raw.startswith(_TOKEN_PREFIX) or not digits.isdigit() or len(digits) > 18:
        raise InvalidQuery("page_token is not one this server handed out")
    return int(digits)
