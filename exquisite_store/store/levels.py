"""Levels of a canvas anchored at the plane's origin: each level halves the one below.

Level 0 is the store's own tiles at 1:1; a tile of level ``k`` covers ``T * 2**k`` plane
pixels each way and is made from the four tiles of level ``k - 1`` under it, halved. The
grid is anchored at the origin as the tiles are, so a level's grid is the same for every
canvas of a session, and a level tile is named by a key made of what it is built from
(never of the canvas): a child canvas shares every level tile of its parent except those
over its new band. Reading a downscaled view of a huge canvas from a level is how the
viewer's deep zoom (``viewer/pyramid.py``, cached in ``cache/pyramid``) and the film
(``exquisite_store/film``) keep memory bounded. Nothing here reads a pixel except
``level_pixels``, and that reads at most four tiles of the level below.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from exquisite_store.errors import NotFound
from exquisite_store.geometry.rect import Rect
from exquisite_store.manifests import Canvas
from exquisite_store.store.canvas import canvas_rect, iter_tiles

if TYPE_CHECKING:
    from exquisite_store.store.store import Store

#: a level stops being made once the whole canvas fits in one tile of it
MAX_LEVELS = 24
KEY_VERSION = b"exq-pyramid-1"

Cell = tuple[int, int, int]  # (level, col, row)


def _floor_div(a: int, k: int) -> int:
    return a >> k  # floor for negative numbers too


def _ceil_div(a: int, k: int) -> int:
    return -((-a) >> k)


def valid_rect(rect: Rect, tile_size: int, level: int, col: int, row: int) -> Rect:
    """The part of a level's cell that the canvas covers, in the cell's own pixels.

    Level-``k`` pixel ``i`` covers plane pixels ``[i * 2**k, (i + 1) * 2**k)``; a pixel the
    canvas only partly covers is kept (the average of what it covers). Halving the
    children's rectangles gives their parent's, so every level agrees with the one below.
    """
    t = tile_size
    x0 = max(col * t, _floor_div(rect.x, level))
    y0 = max(row * t, _floor_div(rect.y, level))
    x1 = min((col + 1) * t, _ceil_div(rect.right, level))
    y1 = min((row + 1) * t, _ceil_div(rect.bottom, level))
    return Rect(x0 - col * t, y0 - row * t, max(0, x1 - x0), max(0, y1 - y0))


def level_rect(rect: Rect, level: int) -> Rect:
    """The canvas's rectangle in level-``level`` pixels (partly covered pixels included)."""
    x0, y0 = _floor_div(rect.x, level), _floor_div(rect.y, level)
    return Rect(x0, y0, _ceil_div(rect.right, level) - x0, _ceil_div(rect.bottom, level) - y0)


def top_level(rect: Rect, tile_size: int) -> int:
    """The coarsest level made: the first whose tiles hold the canvas in at most 2 x 2."""
    longest = max(rect.w, rect.h, 1)
    level = 0
    while (tile_size << level) < longest and level < MAX_LEVELS:
        level += 1
    return level


def halve(block: np.ndarray, part: Rect) -> tuple[np.ndarray, Rect]:
    """A ``2T x 2T`` block whose pixels are valid in ``part``, halved (box filter).

    Returns the halved pixels of ``part`` and where they lie in the ``T x T`` result.
    A pixel pair cut by the edge of ``part`` is completed by repeating its edge pixel,
    so an edge pixel keeps its own colour. Pure: no I/O.
    """
    out = Rect(part.x // 2, part.y // 2, 0, 0)
    x1, y1 = -(-part.right // 2), -(-part.bottom // 2)
    out = Rect(out.x, out.y, x1 - out.x, y1 - out.y)
    sub = block[part.y : part.bottom, part.x : part.right]
    pad = (
        (part.y % 2, (2 * y1 - part.bottom)),
        (part.x % 2, (2 * x1 - part.right)),
        (0, 0),
    )
    sub = np.pad(sub, pad, mode="edge").astype(np.uint16)
    s = sub[0::2, 0::2] + sub[1::2, 0::2] + sub[0::2, 1::2] + sub[1::2, 1::2]
    return ((s + 2) // 4).astype(np.uint8), out


@dataclass
class Index:
    """What a canvas's levels are made of: its tiles by cell, and each level tile's key."""

    canvas_id: str
    rect: Rect
    tile_size: int
    mode: str
    top: int
    tiles: dict[tuple[int, int], str]
    keys: dict[Cell, str] = field(default_factory=dict)

    def valid(self, level: int, col: int, row: int) -> Rect:
        """The part of a cell the canvas covers (empty: the cell is outside the canvas)."""
        return valid_rect(self.rect, self.tile_size, level, col, row)

    def key(self, level: int, col: int, row: int) -> str:
        """What a tile is made of, as a hash: equal keys are equal pixels, on any canvas."""
        cell = (level, col, row)
        hit = self.keys.get(cell)
        if hit is not None:
            return hit
        part = self.valid(level, col, row)
        if part.empty:
            raise NotFound(f"level {level} has no tile at ({col}, {row}) on this canvas")
        h = hashlib.blake2b(KEY_VERSION, digest_size=16)
        h.update(f"{level}:{tuple(part)}:{self.mode}".encode())
        if level == 0:
            h.update(self.tiles[(col, row)].encode())
        else:
            for dy in (0, 1):
                for dx in (0, 1):
                    c, r = 2 * col + dx, 2 * row + dy
                    below = self.valid(level - 1, c, r)
                    h.update(
                        b"|" + (self.key(level - 1, c, r).encode() if not below.empty else b"-")
                    )
        key = h.hexdigest()
        self.keys[cell] = key
        return key

    def cells(self, level: int) -> Iterator[tuple[int, int]]:
        """The cells of a level that hold some of the canvas."""
        span = self.tile_size << level
        r = self.rect
        for row in range(r.y // span, (r.bottom - 1) // span + 1):
            for col in range(r.x // span, (r.right - 1) // span + 1):
                yield col, row

    def full(self, level: int, col: int, row: int) -> bool:
        """Whether the canvas covers the whole cell."""
        part = self.valid(level, col, row)
        return (part.w, part.h) == (self.tile_size, self.tile_size)


def read_index(store: Store, canvas_id: str) -> Index:
    """A canvas's tiles by cell (its manifest and tree nodes only: no pixels read)."""
    canvas = store.objects.get_manifest(canvas_id, Canvas)
    rect = canvas_rect(canvas)
    tiles = {(c, r): oid for c, r, oid in iter_tiles(store.objects, canvas)}
    return Index(
        canvas_id, rect, canvas.tile_size, canvas.mode, top_level(rect, canvas.tile_size), tiles
    )


#: ``below(level, col, row)``: the valid pixels of a tile of the level below (part-sized)
Below = Callable[[int, int, int], np.ndarray]


def level_pixels(store: Store, index: Index, level: int, col: int, row: int, below: Below):
    """The valid pixels of a level tile (``index.valid(...)``-sized, the canvas's channels).

    Level 0 is the store's tile as it is (read without the decoded-image cache); a tile
    above is made from the (at most four) tiles under it that ``below`` gives, halved.
    """
    part = index.valid(level, col, row)
    if part.empty:
        raise NotFound(f"level {level} has no tile at ({col}, {row}) on this canvas")
    if level == 0:
        return store.objects.get_image(index.tiles[(col, row)], remember=False)
    t = index.tile_size
    channels = 4 if index.mode == "RGBA" else 3
    block = np.zeros((2 * t, 2 * t, channels), np.uint8)
    covered = Rect(0, 0, 0, 0)
    for dy in (0, 1):
        for dx in (0, 1):
            c, r = 2 * col + dx, 2 * row + dy
            sub = index.valid(level - 1, c, r)
            if sub.empty:
                continue
            at = Rect(dx * t + sub.x, dy * t + sub.y, sub.w, sub.h)
            block[at.y : at.bottom, at.x : at.right] = below(level - 1, c, r)[:, :, :channels]
            covered = covered.union(at)
    halved, where = halve(block, covered)
    if where != part:  # the levels always agree on what the canvas covers
        raise NotFound(f"level {level} tile ({col}, {row}) does not match the level below")
    return halved
