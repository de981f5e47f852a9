"""Derived images for the viewer: full canvases, thumbnails, diffs (cached in ``cache/``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from exquisite_store import imageio
from exquisite_store.geometry.rect import Rect
from exquisite_store.manifests import Canvas
from exquisite_store.store import Store, compose
from exquisite_store.store.canvas import canvas_rect, iter_tiles
from exquisite_store.store.files import atomic_write

THUMB = (240, 160)


def _cached(store: Store, name: str, make) -> Path:
    """``cache/<name>``, made by ``make() -> bytes`` the first time (atomically)."""
    root = store.root
    assert root is not None, "the viewer serves a store on disk"
    path = root / "cache" / name
    if not path.exists():
        atomic_write(path, make(), tmp_dir=root / "tmp")
    return path


def canvas_png(store: Store, canvas_id: str) -> Path:
    """The whole canvas as one PNG."""

    def make() -> bytes:
        canvas = store.objects.get_manifest(canvas_id, Canvas)
        full = compose(store.objects, canvas, canvas_rect(canvas))
        return imageio.encode_png(imageio.from_array(full), compress_level=3)

    return _cached(store, f"canvas/{canvas_id}.png", make)


def thumbnail(store: Store, canvas: Canvas, box: tuple[int, int] = THUMB) -> np.ndarray:
    """A small version built tile by tile, never holding the full canvas in memory."""
    scale = min(box[0] / canvas.width, box[1] / canvas.height, 1.0)
    w, h = max(1, round(canvas.width * scale)), max(1, round(canvas.height * scale))
    out = Image.new("RGBA" if canvas.mode == "RGBA" else "RGB", (w, h))
    t = canvas.tile_size
    crect = canvas_rect(canvas)
    for col, row, oid in iter_tiles(store.objects, canvas):
        cell = Rect(col * t, row * t, t, t).intersect(crect)
        x0 = int((cell.x - canvas.x) * scale)
        y0 = int((cell.y - canvas.y) * scale)
        x1 = max(x0 + 1, int((cell.right - canvas.x) * scale))
        y1 = max(y0 + 1, int((cell.bottom - canvas.y) * scale))
        tile = imageio.from_array(store.objects.get_image(oid))
        out.paste(tile.resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR), (x0, y0))
    return np.asarray(out)


def thumb_png(store: Store, canvas_id: str) -> Path:
    """The thumbnail of a canvas as a PNG."""

    def make() -> bytes:
        canvas = store.objects.get_manifest(canvas_id, Canvas)
        return imageio.encode_png(imageio.from_array(thumbnail(store, canvas)), compress_level=6)

    return _cached(store, f"thumb/{canvas_id}.png", make)


def diff_png(store: Store, a: Canvas, b: Canvas, a_id: str, b_id: str) -> Path:
    """Where two canvases differ over their common rectangle, amplified (x4), on black."""

    def make() -> bytes:
        common = canvas_rect(a).intersect(canvas_rect(b))
        if common.empty:
            return imageio.encode_png(imageio.from_array(np.zeros((1, 1, 3), np.uint8)))
        pa = compose(store.objects, a, common)[:, :, :3].astype(np.int16)
        pb = compose(store.objects, b, common)[:, :, :3].astype(np.int16)
        d = np.clip(np.abs(pa - pb) * 4, 0, 255).astype(np.uint8)
        return imageio.encode_png(imageio.from_array(d))

    return _cached(store, f"diff/{a_id}-{b_id}.png", make)
