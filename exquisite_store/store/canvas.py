"""Tiled canvases: place an image on the plane, compose any region, edit by region.

A canvas is a manifest of tile ids on a grid anchored at the plane's origin. An edit
stores only the tiles it changes; every other tile keeps its id, so a step costs in
proportion to the band it adds, not to the canvas.
"""

from __future__ import annotations

import numpy as np

from exquisite_store.errors import CompositeError
from exquisite_store.geometry.rect import Rect
from exquisite_store.imageio import CANVAS_MODES, mode_of
from exquisite_store.manifests import Canvas
from exquisite_store.store.objects import ObjectStore

CHANNELS = {"RGB": 3, "RGBA": 4}


def canvas_rect(canvas: Canvas) -> Rect:
    """The canvas's rectangle on the plane."""
    return Rect(canvas.x, canvas.y, canvas.width, canvas.height)


def _cells(rect: Rect, t: int) -> list[tuple[int, int, Rect]]:
    """Grid cells ``(col, row, cell ∩ rect)`` covering ``rect``, sorted by row then col."""
    if rect.empty:
        return []
    out = []
    for row in range(rect.y // t, (rect.bottom - 1) // t + 1):
        for col in range(rect.x // t, (rect.right - 1) // t + 1):
            out.append((col, row, Rect(col * t, row * t, t, t).intersect(rect)))
    return out


def put_canvas(objects: ObjectStore, arr: np.ndarray, x: int, y: int, tile_size: int) -> Canvas:
    """Cut an RGB/RGBA array placed at (x, y) into tiles and store them."""
    mode = mode_of(arr)
    if mode not in CANVAS_MODES:
        raise CompositeError(f"a canvas must be RGB or RGBA, not {mode}")
    rect = Rect(x, y, arr.shape[1], arr.shape[0])
    tiles = []
    for col, row, cell in _cells(rect, tile_size):
        rows, cols = cell.slices(rect)
        tiles.append((col, row, objects.put_image(arr[rows, cols])))
    return Canvas(
        x=x, y=y, width=rect.w, height=rect.h, mode=mode, tile_size=tile_size, tiles=tuple(tiles)
    )


def tile_at(canvas: Canvas, col: int, row: int) -> str:
    """The tile id at a grid cell (tiles are the full grid, sorted by row then col)."""
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


def compose(objects: ObjectStore, canvas: Canvas, rect: Rect) -> np.ndarray:
    """The pixels of ``rect`` (which must lie inside the canvas) as an HxWxC array.

    Only the tiles under ``rect`` are looked up (by grid position), so the cost
    follows the region, not the canvas.
    """
    crect = canvas_rect(canvas)
    if not crect.contains(rect):
        raise CompositeError(f"region {tuple(rect)} is outside the canvas {tuple(crect)}")
    out = np.empty((rect.h, rect.w, CHANNELS[canvas.mode]), dtype=np.uint8)
    t = canvas.tile_size
    for col, row, part in _cells(rect, t):
        cell = Rect(col * t, row * t, t, t).intersect(crect)
        oid = tile_at(canvas, col, row)
        tile = objects.get_image(oid)
        if tile.shape[:2] != (cell.h, cell.w):
            raise CompositeError(
                f"tile {oid[:12]} is {tile.shape[1]}x{tile.shape[0]}, expected {cell.w}x{cell.h}"
            )
        out[part.slices(rect)] = tile[part.slices(cell)]
    return out


def compose_full(objects: ObjectStore, canvas: Canvas) -> np.ndarray:
    """The whole canvas as one array."""
    return compose(objects, canvas, canvas_rect(canvas))


def edit_canvas(
    objects: ObjectStore, parent: Canvas, new_rect: Rect, patch: np.ndarray, patch_rect: Rect
) -> Canvas:
    """A new canvas over ``new_rect``: ``patch`` at ``patch_rect``, the parent elsewhere.

    ``new_rect`` must contain the parent's rectangle and every pixel of it outside
    the parent must be covered by the patch. Tiles whose pixels are all the parent's
    keep their ids; only changed tiles are composed and stored.
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
    old = {(c, r): oid for c, r, oid in parent.tiles}
    tiles = []
    for col, row, cell in _cells(new_rect, t):
        in_parent = cell.intersect(prect)
        in_patch = cell.intersect(patch_rect)
        if in_patch.empty and in_parent == cell and (col, row) in old:
            tiles.append((col, row, old[(col, row)]))
            continue
        covered = in_parent.area + in_patch.area - in_parent.intersect(in_patch).area
        if covered != cell.area:
            raise CompositeError(f"cell ({col}, {row}) has pixels from neither parent nor patch")
        tile = np.empty((cell.h, cell.w, patch.shape[2]), dtype=np.uint8)
        if not in_parent.empty:
            tile[in_parent.slices(cell)] = compose(objects, parent, in_parent)
        if not in_patch.empty:
            tile[in_patch.slices(cell)] = patch[in_patch.slices(patch_rect)]
        tiles.append((col, row, objects.put_image(tile)))
    return Canvas(
        x=new_rect.x,
        y=new_rect.y,
        width=new_rect.w,
        height=new_rect.h,
        mode=parent.mode,
        tile_size=t,
        tiles=tuple(tiles),
    )
