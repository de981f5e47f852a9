"""A canvas's tile pyramid for deep zoom, derived from the store's tiles (cached in ``cache/``).

Level 0 is the store's own tiles at 1:1, on the grid anchored at the plane's origin; a
tile of level ``k`` covers ``T * 2**k`` plane pixels each way and is made from the four
tiles of level ``k - 1`` under it, halved. The pyramid is anchored at the plane's origin
as the tiles are, so a level's grid is the same for every canvas of a session.

A level tile is cached under a key made of what it is built from (the keys of the
tiles under it and where their pixels lie), never of the canvas: a child canvas shares
every cached level tile of its parent except those over its new band, and a cached
file never changes (``ETag`` = key, served immutable). Tiles are ``T x T``; where the
canvas covers only part of a cell, the rest is transparent. Nothing here ever
composes a whole canvas: a tile reads at most four tiles of the level below.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from exquisite_store import imageio
from exquisite_store.errors import NotFound
from exquisite_store.geometry.rect import Rect
from exquisite_store.store import Store
from exquisite_store.store.levels import (  # the level-building core, shared with the film
    MAX_LEVELS,
    Cell,
    Index,
    halve,
    read_index,
    top_level,
    valid_rect,
)
from viewer import derived_images

__all__ = ["MAX_LEVELS", "Cell", "Index", "halve", "read_index", "top_level", "valid_rect"]

#: canvases whose tile index is remembered (ids never change: an index never goes stale)
INDEX_MEMO = 32
#: zlib level of a cached level tile (1: a third of the time of 6 for ~10% more bytes)
PNG_LEVEL = 3


class IndexMemo:
    """Tile indexes of recently shown canvases (thread-safe; canvases never change)."""

    def __init__(self, size: int = INDEX_MEMO) -> None:
        self.size = size
        self._items: OrderedDict[str, Index] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, store: Store, canvas_id: str) -> Index:
        """The index of a canvas, read once."""
        with self._lock:
            hit = self._items.get(canvas_id)
            if hit is not None:
                self._items.move_to_end(canvas_id)
                return hit
        index = read_index(store, canvas_id)
        with self._lock:
            self._items[canvas_id] = index
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return index


def store_tile(index: Index, col: int, row: int) -> str | None:
    """The store's own tile when level 0's cell is whole (it is sent as it is), else None."""
    if index.valid(0, col, row).empty:
        raise NotFound(f"level 0 has no tile at ({col}, {row}) on this canvas")
    return index.tiles[(col, row)] if index.full(0, col, row) else None


def tile_path(store: Store, index: Index, level: int, col: int, row: int) -> Path:
    """The cached PNG of a level tile (made, and the tiles below it, the first time)."""
    if not 0 <= level <= index.top:
        raise NotFound(f"this canvas's pyramid has levels 0 to {index.top}, not {level}")
    key = index.key(level, col, row)
    return derived_images.cached_file(
        store,
        f"pyramid/{key[:2]}/{key}.png",
        lambda: _encode(index, _pixels(store, index, level, col, row)),
    )


def _pixels(store: Store, index: Index, level: int, col: int, row: int) -> np.ndarray:
    """The ``T x T`` pixels of a tile (RGBA where the canvas covers only part of it)."""
    t = index.tile_size
    part = index.valid(level, col, row)
    if level == 0:
        pixels = store.objects.get_image(index.tiles[(col, row)], remember=False)
        return _place(pixels, part, t)
    channels = 4 if index.mode == "RGBA" else 3
    block = np.zeros((2 * t, 2 * t, channels), np.uint8)
    covered = Rect(0, 0, 0, 0)
    for dy in (0, 1):
        for dx in (0, 1):
            c, r = 2 * col + dx, 2 * row + dy
            below = index.valid(level - 1, c, r)
            if below.empty:
                continue
            child = tile_pixels(store, index, level - 1, c, r)
            at = Rect(dx * t + below.x, dy * t + below.y, below.w, below.h)
            block[at.y : at.bottom, at.x : at.right] = child[
                below.y : below.bottom, below.x : below.right, :channels
            ]
            covered = covered.union(at)
    halved, where = halve(block, covered)
    assert where == part, (where, part)  # the levels agree on what the canvas covers
    return _place(halved, part, t)


def _place(pixels: np.ndarray, part: Rect, t: int) -> np.ndarray:
    """Pixels of a cell's covered part, in a whole ``T x T`` tile (transparent elsewhere)."""
    if (part.w, part.h) == (t, t):
        return pixels
    out = np.zeros((t, t, 4), np.uint8)
    out[part.y : part.bottom, part.x : part.right, : pixels.shape[2]] = pixels
    if pixels.shape[2] == 3:
        out[part.y : part.bottom, part.x : part.right, 3] = 255
    return out


def _read(store: Store, path: Path) -> np.ndarray:
    with derived_images.open_cached(store, path) as f:
        img = imageio.decode(f.read(), what="a cached pyramid tile")
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[:, :, None].repeat(3, axis=2)
    return arr


def _encode(index: Index, pixels: np.ndarray) -> bytes:
    return imageio.encode_png(imageio.from_array(pixels), compress_level=PNG_LEVEL)


def all_tiles(store: Store, index: Index) -> Iterator[tuple[Cell, Path | str]]:
    """Every tile of the pyramid: ``(cell, cached path)``, or the store tile's id at level 0.

    Made coarse level last, so each is built from tiles already cached (the export).
    """
    for level in range(index.top + 1):
        for col, row in index.cells(level):
            if level == 0 and (oid := store_tile(index, col, row)) is not None:
                yield (0, col, row), oid
            else:
                yield (level, col, row), tile_path(store, index, level, col, row)


def tile_pixels(store: Store, index: Index, level: int, col: int, row: int) -> np.ndarray:
    """A tile's ``T x T`` pixels, as served."""
    if level == 0 and (oid := store_tile(index, col, row)) is not None:
        return store.objects.get_image(oid, remember=False)
    return _read(store, tile_path(store, index, level, col, row))


def diff_path(store: Store, a: Index, b: Index, level: int, col: int, row: int) -> Path:
    """A tile of where two canvases differ over their common part (x4; black is identical)."""
    if a.tile_size != b.tile_size:
        raise NotFound("these canvases are tiled differently; compare them side by side")
    common = a.valid(level, col, row).intersect(b.valid(level, col, row))
    if common.empty or level > min(a.top, b.top):
        raise NotFound(f"the two canvases share no pixels at level {level} ({col}, {row})")
    ka, kb = a.key(level, col, row), b.key(level, col, row)
    key = hashlib.blake2b(f"{ka}-{kb}".encode(), digest_size=16).hexdigest()

    def make() -> bytes:
        t = a.tile_size
        out = np.zeros((t, t, 4), np.uint8)
        s = common.slices(Rect(0, 0, t, t))
        if ka != kb:  # equal keys are equal pixels: black without reading either
            pa = tile_pixels(store, a, level, col, row)[s][:, :, :3].astype(np.int16)
            pb = tile_pixels(store, b, level, col, row)[s][:, :, :3].astype(np.int16)
            out[s][:, :, :3] = np.clip(np.abs(pa - pb) * 4, 0, 255).astype(np.uint8)
        out[s][:, :, 3] = 255
        return imageio.encode_png(imageio.from_array(out), compress_level=PNG_LEVEL)

    return derived_images.cached_file(store, f"pyramid-diff/{key[:2]}/{key}.png", make)
