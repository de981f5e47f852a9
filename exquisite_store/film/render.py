"""A film's frames rendered from the store's tiles at the scale each frame needs.

A frame reads only the tiles under its camera, from the level whose pixels are the
first at least as fine as the frame's (``store/levels.py``: level ``k`` is the canvas
halved ``k`` times), and resizes that small region to the frame. So a frame costs
about its own size whatever the canvas: the film of a 20,000-pixel-wide canvas
never holds one whole canvas, at any scale. Level tiles are kept in a bounded memo by
key, so a tile that did not change between steps (most of them) is made once.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image

from exquisite_store.film.plan import Frame
from exquisite_store.geometry.rect import Rect
from exquisite_store.store import Store
from exquisite_store.store.levels import Index, level_pixels, level_rect, read_index

#: bytes of level tiles kept between frames (a few hundred 256 x 256 tiles)
MEMO_BYTES = 48 << 20
BACKGROUND = (0, 0, 0)


class LevelMemo:
    """Level tiles by key (equal keys are equal pixels), least recently used dropped first."""

    def __init__(self, store: Store, budget: int = MEMO_BYTES) -> None:
        self.store = store
        self.budget = budget
        self.bytes = 0
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()

    def pixels(self, index: Index, level: int, col: int, row: int) -> np.ndarray:
        """The valid pixels of a level tile of ``index``'s canvas."""
        key = index.key(level, col, row)
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            return hit
        arr = level_pixels(
            self.store, index, level, col, row, lambda lv, c, r: self.pixels(index, lv, c, r)
        )
        self._items[key] = arr
        self.bytes += arr.nbytes
        while self.bytes > self.budget and len(self._items) > 1:
            _, old = self._items.popitem(last=False)
            self.bytes -= old.nbytes
        return arr


def level_for(scale: float, top: int) -> int:
    """The coarsest level still at least as fine as ``scale`` output pixels per plane pixel."""
    if scale >= 1:
        return 0
    return max(0, min(top, math.floor(math.log2(1 / scale) + 1e-9)))


class Renderer:
    """Frames of a chain of canvases (by canvas id, root first) at ``size``."""

    def __init__(self, store: Store, canvas_ids: Sequence[str], size: tuple[int, int]) -> None:
        self.store = store
        self.canvas_ids = list(canvas_ids)
        self.size = size
        self.memo = LevelMemo(store)
        self._indexes: OrderedDict[int, Index] = OrderedDict()
        self._last: tuple[Frame, np.ndarray] | None = None

    def index(self, k: int) -> Index:
        """The tile index of canvas ``k`` (the last few are remembered)."""
        hit = self._indexes.get(k)
        if hit is None:
            hit = self._indexes[k] = read_index(self.store, self.canvas_ids[k])
            while len(self._indexes) > 3:
                self._indexes.popitem(last=False)
        self._indexes.move_to_end(k)
        return hit

    def frames(self, plan: Sequence[Frame]) -> Iterator[np.ndarray]:
        """Each frame of ``plan`` as an ``H x W x 3`` array, one at a time."""
        for frame in plan:
            yield self.render(frame)

    def render(self, frame: Frame) -> np.ndarray:
        """One frame: the canvas's pixels under the camera, clipped, on the background."""
        if self._last is not None and self._last[0] == frame:
            return self._last[1]  # a hold: the same picture again
        w, h = self.size
        out = np.empty((h, w, 3), np.uint8)
        out[:] = BACKGROUND
        index = self.index(frame.canvas)
        cam = frame.camera
        vis = frame.clip.intersect(index.rect)
        sx, sy = w / cam.w, h / cam.h
        u0, u1 = max(0, round((vis.x - cam.x) * sx)), min(w, round((vis.right - cam.x) * sx))
        v0, v1 = max(0, round((vis.y - cam.y) * sy)), min(h, round((vis.bottom - cam.y) * sy))
        if not vis.empty and u1 > u0 and v1 > v0:
            # the plane box those output pixels cover, kept inside what is shown
            px0, px1 = max(vis.x, cam.x + u0 / sx), min(vis.right, cam.x + u1 / sx)
            py0, py1 = max(vis.y, cam.y + v0 / sy), min(vis.bottom, cam.y + v1 / sy)
            part = self._sample(index, (px0, py0, px1, py1), min(sx, sy), (u1 - u0, v1 - v0))
            out[v0:v1, u0:u1] = part
        self._last = (frame, out)
        return out

    def _sample(
        self, index: Index, box: tuple[float, float, float, float], scale: float, size: tuple
    ) -> np.ndarray:
        """The plane ``box`` of a canvas resized to ``size``, read from the right level."""
        level = level_for(scale, index.top)
        d = float(1 << level)
        lx0, ly0, lx1, ly1 = (v / d for v in box)
        region = Rect(
            math.floor(lx0),
            math.floor(ly0),
            math.ceil(lx1) - math.floor(lx0),
            math.ceil(ly1) - math.floor(ly0),
        ).intersect(level_rect(index.rect, level))
        pixels = self._compose(index, level, region)
        img = Image.fromarray(pixels)
        crop = (
            max(0.0, lx0 - region.x),
            max(0.0, ly0 - region.y),
            min(float(region.w), lx1 - region.x),
            min(float(region.h), ly1 - region.y),
        )
        arr = np.asarray(img.resize(size, Image.Resampling.BILINEAR, box=crop))
        if arr.shape[2] == 4:  # an RGBA canvas: over the background
            a = arr[:, :, 3:4].astype(np.uint16)
            bg = np.array(BACKGROUND, np.uint16)
            return ((arr[:, :, :3] * a + bg * (255 - a) + 127) // 255).astype(np.uint8)
        return arr

    def _compose(self, index: Index, level: int, region: Rect) -> np.ndarray:
        """The pixels of ``region`` (level pixels, inside the canvas) from level tiles."""
        t = index.tile_size
        channels = 4 if index.mode == "RGBA" else 3
        out = np.zeros((region.h, region.w, channels), np.uint8)
        for row in range(region.y // t, (region.bottom - 1) // t + 1):
            for col in range(region.x // t, (region.right - 1) // t + 1):
                part = index.valid(level, col, row)
                cell = Rect(col * t + part.x, row * t + part.y, part.w, part.h)
                inside = cell.intersect(region)
                if inside.empty:
                    continue
                tile = self.memo.pixels(index, level, col, row)
                out[inside.slices(region)] = tile[inside.slices(cell)]
        return out
