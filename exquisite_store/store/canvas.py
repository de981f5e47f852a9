"""Tiled canvases: place an image on the plane, compose any region, edit by region.

A canvas is a manifest of tile ids on a grid anchored at the plane's origin. An edit
stores only the tiles it changes; every other tile keeps its id, so a step costs in
proportion to the band it adds, not to the canvas. New canvases are trees
(``canvas_tree``: schema 2, whose metadata per step follows the change too); flat
canvases (schema 1) of older stores are read as they are, and the first edit of one
makes a tree.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
from msgspec import UNSET

from exquisite_store.errors import CompositeError
from exquisite_store.geometry.rect import Rect
from exquisite_store.imageio import CANVAS_MODES, mode_of, write_png_bands
from exquisite_store.manifests import Canvas
from exquisite_store.store import canvas_tree
from exquisite_store.store.objects import ObjectStore

CHANNELS = {"RGB": 3, "RGBA": 4}


def canvas_rect(canvas: Canvas) -> Rect:
    """The canvas's rectangle on the plane."""
    return Rect(canvas.x, canvas.y, canvas.width, canvas.height)


def is_tree(canvas: Canvas) -> bool:
    """Whether the canvas is a tree (schema 2) rather than a flat tile list (schema 1)."""
    return canvas.root is not UNSET


def _cells(rect: Rect, t: int) -> list[tuple[int, int, Rect]]:
    """Grid cells ``(col, row, cell ∩ rect)`` covering ``rect``, sorted by row then col."""
    if rect.empty:
        return []
    out = []
    for row in range(rect.y // t, (rect.bottom - 1) // t + 1):
        for col in range(rect.x // t, (rect.right - 1) // t + 1):
            out.append((col, row, Rect(col * t, row * t, t, t).intersect(rect)))
    return out


def cell_rect(canvas: Canvas, col: int, row: int) -> Rect:
    """The part of the canvas a tile covers."""
    t = canvas.tile_size
    return Rect(col * t, row * t, t, t).intersect(canvas_rect(canvas))


def iter_tiles(
    objects: ObjectStore, canvas: Canvas, rect: Rect | None = None
) -> Iterator[tuple[int, int, str]]:
    """``(col, row, tile id)`` of the tiles meeting ``rect`` (all when None), row by row.

    A tree reads only the nodes over ``rect``; a flat canvas is indexed by grid position.
    """
    if is_tree(canvas):
        yield from canvas_tree.iter_tiles(objects, canvas, rect)
        return
    area = canvas_rect(canvas) if rect is None else canvas_rect(canvas).intersect(rect)
    for col, row, _part in _cells(area, canvas.tile_size):
        yield col, row, _flat_tile_at(canvas, col, row)


def tile_at(objects: ObjectStore, canvas: Canvas, col: int, row: int) -> str:
    """The tile id at a grid cell."""
    if is_tree(canvas):
        return canvas_tree.tile_at(objects, canvas, col, row)
    return _flat_tile_at(canvas, col, row)


def _flat_tile_at(canvas: Canvas, col: int, row: int) -> str:
    """A schema-1 tile: the list is the full grid, sorted by row then col."""
    t = canvas.tile_size
    col0, row0 = canvas.x // t, canvas.y // t
    ncols = (canvas.x + canvas.width - 1) // t - col0 + 1
    i = (row - row0) * ncols + (col - col0)
    if 0 <= i < len(canvas.tiles) and canvas.tiles[i][:2] == (col, row):
        return canvas.tiles[i][2]
    for c, r, oid in canvas.tiles:  # not in grid order: still right, only slower
        if (c, r) == (col, row):
            return oid
    raise CompositeError(f"canvas has no tile at ({col}, {row})")


def put_canvas(objects: ObjectStore, arr: np.ndarray, x: int, y: int, tile_size: int) -> Canvas:
    """Cut an RGB/RGBA array placed at (x, y) into tiles and store them (a tree)."""
    mode = mode_of(arr)
    if mode not in CANVAS_MODES:
        raise CompositeError(f"a canvas must be RGB or RGBA, not {mode}")
    rect = Rect(x, y, arr.shape[1], arr.shape[0])
    tree = canvas_tree.TreeEdit(objects, None, rect, tile_size)
    cells = _cells(rect, tile_size)
    ids = objects.put_images([arr[cell.slices(rect)] for _, _, cell in cells])
    for (col, row, _), oid in zip(cells, ids, strict=True):
        tree.set_tile(col, row, oid)
    return tree.write(dict(x=x, y=y, width=rect.w, height=rect.h, mode=mode))


def compose(
    objects: ObjectStore, canvas: Canvas, rect: Rect, *, remember: bool = True
) -> np.ndarray:
    """The pixels of ``rect`` (which must lie inside the canvas) as an HxWxC array.

    Only the tiles under ``rect`` are looked up, so the cost follows the region, not
    the canvas. ``remember=False`` keeps the tiles out of the decoded-image cache.
    """
    crect = canvas_rect(canvas)
    if not crect.contains(rect):
        raise CompositeError(f"region {tuple(rect)} is outside the canvas {tuple(crect)}")
    out = np.empty((rect.h, rect.w, CHANNELS[canvas.mode]), dtype=np.uint8)
    want = {(c, r) for c, r, _ in _cells(rect, canvas.tile_size)}
    for col, row, oid in iter_tiles(objects, canvas, rect):
        want.discard((col, row))
        cell = cell_rect(canvas, col, row)
        tile = objects.get_image(oid, remember=remember)
        if tile.shape[:2] != (cell.h, cell.w):
            raise CompositeError(
                f"tile {oid[:12]} is {tile.shape[1]}x{tile.shape[0]}, expected {cell.w}x{cell.h}"
            )
        part = cell.intersect(rect)
        out[part.slices(rect)] = tile[part.slices(cell)]
    if want:  # a damaged manifest: never return uninitialised pixels
        col, row = min(want, key=lambda p: (p[1], p[0]))
        raise CompositeError(f"canvas has no tile at ({col}, {row})")
    return out


def compose_full(objects: ObjectStore, canvas: Canvas) -> np.ndarray:
    """The whole canvas as one array (small canvases only: large ones are streamed)."""
    return compose(objects, canvas, canvas_rect(canvas))


def edit_canvas(
    objects: ObjectStore, parent: Canvas, new_rect: Rect, patch: np.ndarray, patch_rect: Rect
) -> Canvas:
    """A new canvas over ``new_rect``: ``patch`` at ``patch_rect``, the parent elsewhere.

    ``new_rect`` must be covered by the parent's rectangle and the patch together.
    Tiles under the patch are composed and stored; every other tile keeps its id and,
    in a tree, every node too: the changed tiles ride in the canvas's ``recent`` list
    until a few have gathered, then are folded into the tree (``canvas_tree.grow``).
    A flat parent becomes a tree.
    """
    prect = canvas_rect(parent)
    t = parent.tile_size
    if patch.shape[:2] != (patch_rect.h, patch_rect.w):
        raise CompositeError(
            f"patch is {patch.shape[1]}x{patch.shape[0]}, "
            f"its rectangle {patch_rect.w}x{patch_rect.h}"
        )
    if patch.ndim != 3 or patch.shape[2] != CHANNELS[parent.mode]:
        raise CompositeError(f"patch channels do not match a {parent.mode} canvas")
    if not new_rect.contains(prect) or not new_rect.contains(patch_rect):
        raise CompositeError("the new canvas must contain the parent and the patch")
    covered = prect.area + patch_rect.area - prect.intersect(patch_rect).area
    if covered != new_rect.area:
        raise CompositeError("the new canvas has pixels from neither the parent nor the patch")
    cells, tiles = [], []
    for col, row, cell in _changed_cells(patch_rect, new_rect, t):
        tile = np.empty((cell.h, cell.w, patch.shape[2]), dtype=np.uint8)
        in_parent = cell.intersect(prect)
        in_patch = cell.intersect(patch_rect)
        if not in_parent.empty:
            tile[in_parent.slices(cell)] = compose(objects, parent, in_parent)
        tile[in_patch.slices(cell)] = patch[in_patch.slices(patch_rect)]
        cells.append((col, row))
        tiles.append(tile)
    changed = dict(zip(cells, objects.put_images(tiles), strict=True))
    base = dict(x=new_rect.x, y=new_rect.y, width=new_rect.w, height=new_rect.h, mode=parent.mode)
    if is_tree(parent):
        return canvas_tree.grow(objects, parent, new_rect, changed, base)
    # a flat parent (schema 1): its tiles go into a new tree once
    tree = canvas_tree.TreeEdit(objects, None, new_rect, t)
    for col, row, oid in parent.tiles:
        tree.set_tile(col, row, changed.pop((col, row), oid))
    for (col, row), oid in changed.items():
        tree.set_tile(col, row, oid)
    return tree.write(base)


def _changed_cells(patch_rect: Rect, new_rect: Rect, t: int) -> list[tuple[int, int, Rect]]:
    """The cells an edit rewrites: those the patch touches, cut to the new canvas."""
    return [
        (col, row, Rect(col * t, row * t, t, t).intersect(new_rect))
        for col, row, _ in _cells(patch_rect, t)
    ]


def differing_tiles(
    objects: ObjectStore, parent: Canvas, child: Canvas
) -> Iterator[tuple[int, int, str]]:
    """Tiles of ``child`` whose id is not the parent's at that cell (or that are new).

    Two trees are compared node by node: a subtree whose node id they share is the
    same, unread, so the cost follows the change. A flat parent is compared tile by
    tile (once: its child is a tree).
    """
    if is_tree(parent) and is_tree(child):
        yield from canvas_tree.differing_tiles(objects, parent, child)
        return
    for col, row, oid in iter_tiles(objects, child):
        try:
            old = tile_at(objects, parent, col, row)
        except CompositeError:
            old = None
        if old != oid:
            yield col, row, oid


def same_pixels(objects: ObjectStore, a: Canvas, b: Canvas) -> bool:
    """Whether two canvases hold the same pixels at the same place, whatever their format.

    Tile ids name pixels and the grid is anchored at the origin, so equal tile lists
    are equal pixels; a flat canvas and a tree of the same pixels are the same picture.
    """
    if (canvas_rect(a), a.mode, a.tile_size) != (canvas_rect(b), b.mode, b.tile_size):
        return False
    return list(iter_tiles(objects, a)) == list(iter_tiles(objects, b))


def iter_bands(objects: ObjectStore, canvas: Canvas) -> Iterator[np.ndarray]:
    """The canvas top to bottom, one row of tiles at a time (full width, tile height).

    Memory follows one band, never the whole canvas: what ``exq canvas`` and every
    full-canvas PNG are encoded from.
    """
    t = canvas.tile_size
    y, bottom = canvas.y, canvas.y + canvas.height
    while y < bottom:
        next_y = min(bottom, (y // t + 1) * t)
        yield compose(objects, canvas, Rect(canvas.x, y, canvas.width, next_y - y), remember=False)
        y = next_y


def write_canvas_png(
    objects: ObjectStore,
    canvas: Canvas,
    f: BinaryIO,
    *,
    compress_level: int = 6,
    text: dict[str, str] | None = None,
) -> None:
    """The whole canvas as a PNG, encoded band by band (memory O(width x tile))."""
    write_png_bands(
        f,
        canvas.width,
        canvas.height,
        canvas.mode,
        iter_bands(objects, canvas),
        compress_level=compress_level,
        text=text,
    )
