"""Reduced levels of a canvas (1/2, 1/4, ... of its size), made from reduced tiles.

Level ``f`` of the plane has one pixel per ``f x f`` block of plane pixels, on a grid
anchored at the plane's origin like the tiles (level pixel ``i`` covers plane pixels
``i*f`` to ``i*f + f``). The tile size is a multiple of ``f``, so every level pixel
lies in exactly one tile: a level is the tiles' reductions side by side, each tile
reduced once and remembered by its id (ids name pixels, so that holds across stores
and canvases). A child canvas's level is its parent's with the tiles that differ
pasted over: the cost of a step's level follows the step's band, not the canvas.

Thumbnails are scaled from the level just finer than their scale. The deep-zoom
pyramid (``viewer/pyramid.py``) uses the same grid but halves tile by tile from its
disk cache; see the README ("Thumbnails") for why the two are kept apart.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple

import numpy as np
from PIL import Image

from exquisite_store.geometry.rect import Rect
from exquisite_store.manifests import Canvas
from exquisite_store.store import Store
from exquisite_store.store.canvas import canvas_rect, cell_rect, differing_tiles, iter_tiles

#: the coarsest level a thumbnail is scaled from (a tile reduces to at least 1 pixel)
MAX_FACTOR = 256


class Level(NamedTuple):
    """Pixels of one level over ``rect``, a rectangle in that level's own coordinates."""

    factor: int
    rect: Rect
    pixels: np.ndarray


class _Lru:
    """A thread-safe LRU of arrays bounded by their bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, tuple[int, object]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple):
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                return None
            self._items.move_to_end(key)
            return hit[1]

    def put(self, key: tuple, value, nbytes: int) -> None:
        if nbytes > self.max_bytes // 4:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (nbytes, value)
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                _, (n, _) = self._items.popitem(last=False)
                self._bytes -= n


_TILES = _Lru(96 * 1024 * 1024)  # reduced tiles, by (tile id, factor, phase)
_LEVELS = _Lru(64 * 1024 * 1024)  # whole-canvas levels, by (canvas id, factor)


def level_rect(rect: Rect, factor: int) -> Rect:
    """The level pixels that a plane rectangle touches."""
    x0, y0 = rect.x // factor, rect.y // factor
    x1, y1 = -(-rect.right // factor), -(-rect.bottom // factor)
    return Rect(x0, y0, x1 - x0, y1 - y0)


def reduce_pixels(arr: np.ndarray, factor: int, phase: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Box-average ``arr`` by ``factor``; its top-left pixel sits ``phase`` into a block.

    The part of a block outside ``arr`` is filled with its edge pixels, so a block the
    canvas covers only partly is (nearly) the mean of what it does cover.
    """
    if factor == 1:
        return arr
    px, py = phase
    h, w = arr.shape[:2]
    right = -(px + w) % factor
    bottom = -(py + h) % factor
    if px or py or right or bottom:
        arr = np.pad(arr, ((py, bottom), (px, right), (0, 0)), mode="edge")
    return np.asarray(Image.fromarray(arr).reduce(factor))


def reduced_tile(store: Store, tile_id: str, factor: int, phase: tuple[int, int]) -> np.ndarray:
    """A tile reduced by ``factor`` (remembered: each tile is decoded once per factor)."""
    key = (tile_id, factor, phase)
    hit = _TILES.get(key)
    if hit is None:
        tile = store.objects.get_image(tile_id)
        hit = reduce_pixels(tile, factor, phase)
        hit.flags.writeable = False
        _TILES.put(key, hit, hit.nbytes + 200)
    return hit


def _paste(store: Store, canvas: Canvas, factor: int, out: Level, cells) -> None:
    """Paste the reductions of ``cells`` (``(col, row, tile id)``) into ``out``."""
    for col, row, oid in cells:
        cell = cell_rect(canvas, col, row)
        small = reduced_tile(store, oid, factor, (cell.x % factor, cell.y % factor))
        where = level_rect(cell, factor).intersect(out.rect)
        if where.empty:
            continue
        src = where.relative_to(level_rect(cell, factor))
        dst = where.relative_to(out.rect)
        out.pixels[dst.y : dst.y + dst.h, dst.x : dst.x + dst.w] = small[
            src.y : src.y + src.h, src.x : src.x + src.w
        ]


def _new_level(canvas: Canvas, factor: int, rect: Rect) -> Level:
    channels = 4 if canvas.mode == "RGBA" else 3
    return Level(factor, rect, np.zeros((rect.h, rect.w, channels), dtype=np.uint8))


def level_region(store: Store, canvas: Canvas, factor: int, rect: Rect | None = None) -> Level:
    """Level ``factor`` of the canvas over a plane rectangle (the whole canvas when None).

    Only the tiles under ``rect`` are read (each reduced once, then remembered).
    """
    area = canvas_rect(canvas) if rect is None else canvas_rect(canvas).intersect(rect)
    out = _new_level(canvas, factor, level_rect(area, factor))
    _paste(store, canvas, factor, out, iter_tiles(store.objects, canvas, area))
    return out


def canvas_level(
    store: Store,
    canvas_id: str,
    factor: int,
    parent_id: str | None = None,
) -> Level:
    """The whole canvas at level ``factor``, from its parent's level when it is at hand.

    A canvas whose parent's level is remembered (a tree viewed parents first, a
    session exported in order) costs only the tiles that differ from the parent's.
    """
    key = (canvas_id, factor)
    hit = _LEVELS.get(key)
    if hit is not None:
        return hit
    canvas = store.objects.get_manifest(canvas_id, Canvas)
    rect = level_rect(canvas_rect(canvas), factor)
    before = _LEVELS.get((parent_id, factor)) if parent_id else None
    if before is not None and rect.contains(before.rect):
        parent = store.objects.get_manifest(parent_id, Canvas)
        out = _new_level(canvas, factor, rect)
        dst = before.rect.relative_to(rect)
        out.pixels[dst.y : dst.y + dst.h, dst.x : dst.x + dst.w] = before.pixels
        _paste(store, canvas, factor, out, differing_tiles(store.objects, parent, canvas))
    else:
        out = level_region(store, canvas, factor)
    out.pixels.flags.writeable = False
    _LEVELS.put(key, out, out.pixels.nbytes + 200)
    return out


def remembered(canvas_id: str, factor: int) -> Level | None:
    """A canvas's level if this process has it at hand."""
    return _LEVELS.get((canvas_id, factor))


def remember(canvas_id: str, level: Level) -> None:
    """Keep a canvas's level at hand (one read back from a cache, say)."""
    level.pixels.flags.writeable = False
    _LEVELS.put((canvas_id, level.factor), level, level.pixels.nbytes + 200)


def thumb_factor(canvas: Canvas, scale: float) -> int:
    """The coarsest level still at least as fine as ``scale`` (a power of two)."""
    f = 1
    while f * 2 <= MAX_FACTOR and canvas.tile_size % (f * 2) == 0 and scale * f * 2 <= 1.0 + 1e-9:
        f *= 2
    return f


def scale_level(level: Level, canvas: Canvas, size: tuple[int, int]) -> np.ndarray:
    """Scale the part of a level that is the canvas to ``size`` (width, height)."""
    f = level.factor
    ox, oy = level.rect.x * f, level.rect.y * f
    box = (
        (canvas.x - ox) / f,
        (canvas.y - oy) / f,
        (canvas.x + canvas.width - ox) / f,
        (canvas.y + canvas.height - oy) / f,
    )
    img = Image.fromarray(np.ascontiguousarray(level.pixels))
    return np.asarray(img.resize(size, Image.Resampling.BILINEAR, box=box))
