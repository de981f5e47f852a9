"""Derived images for the viewer: full canvases, thumbnails, diffs (cached in ``cache/``).

Thumbnails are scaled from reduced levels of the canvas (``canvas_levels``), built from
the parent's level plus the step's new tiles; diffs cover only the tiles that differ.

When the store's ``cache/`` cannot be written (a read-only store), they are cached
outside the store instead, under ``$XDG_CACHE_HOME/exquisite-store/<key>`` (or
``~/.cache``, or the system's temp folder), keyed by the store's path. A cached file
is never read through a symbolic link.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import itertools
import os
import stat
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from exquisite_store import imageio
from exquisite_store.errors import ArtifactWriteError, ExqError, NotFound
from exquisite_store.geometry.rect import Rect
from exquisite_store.manifests import Canvas
from exquisite_store.store import Store, compose, nofollow
from exquisite_store.store.canvas import canvas_rect, differing_tiles, write_canvas_png
from exquisite_store.store.files import atomic_write
from viewer import canvas_levels

THUMB = (240, 160)
#: errno names of a cache folder that cannot be written (ArtifactWriteError's detail)
UNWRITABLE = frozenset({"EROFS", "EACCES", "EPERM"})


def fallback_dirs(root: Path | str) -> list[Path]:
    """Caches outside the store for ``root``: in the user's cache folder, then in temp.

    ``root`` is the store's folder, or the address of a store on object storage (whose
    derived files are always cached here).
    """
    home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return list(_fallback_dirs(str(root), isinstance(root, Path), home, tempfile.gettempdir()))


@functools.lru_cache(maxsize=64)
def _fallback_dirs(root: str, is_path: bool, home: str, temp: str) -> tuple[Path, ...]:
    """``fallback_dirs`` for one store (path or address) and environment (resolving costs)."""
    name = str(Path(root).resolve()) if is_path else root
    key = hashlib.blake2b(name.encode(), digest_size=10).hexdigest()
    user = f"exquisite-store-{os.getuid()}" if hasattr(os, "getuid") else "exquisite-store"
    return (Path(home) / "exquisite-store" / key, Path(temp) / user / key)


def _bases(root: Path | str) -> list[tuple[Path, Path]]:
    """Where cached files may be, as ``(folder, what its paths are named relative to)``.

    The store's cache first (its paths named from the store's root), then the fallbacks
    that are private.
    """
    fallbacks = [(b, b) for b in fallback_dirs(root) if _private(b)]
    return [(root / "cache", root), *fallbacks] if isinstance(root, Path) else fallbacks


def _cache_root(store: Store) -> Path | str:
    """The store's folder, or its address when it has none (object storage)."""
    return store.root if store.root is not None else store.location


def _private(base: Path, create: bool = False) -> bool:
    """Whether a fallback cache and its parent are real folders only this user can change.

    Another user cannot have planted it (in a shared temp folder) or links in it.
    """
    if create:
        with contextlib.suppress(OSError):
            base.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            base.mkdir(exist_ok=True, mode=0o700)
    for d in (base.parent, base):
        try:
            st = os.lstat(d)
        except OSError:
            return False
        mine = not hasattr(os, "getuid") or st.st_uid == os.getuid()
        if not (stat.S_ISDIR(st.st_mode) and mine) or st.st_mode & 0o022:
            return False
    return True


def find_cached(store: Store, name: str) -> Path | None:
    """``cache/<name>`` if it was made, in the store's cache or a fallback (never a link)."""
    for base, top in _bases(_cache_root(store)):
        st = nofollow.lstat(top, (base / name).relative_to(top).as_posix())
        if st is not None and st.st_size > 0:  # empty: left by a crash (written unsynced)
            return base / name
    return None


def _cached(store: Store, name: str, make: Callable[[], bytes]) -> Path:
    """``cache/<name>``, made by ``make() -> bytes`` the first time (atomically).

    Found in the store's cache or a fallback one (never through a link); made in the
    store's cache, or in the first fallback when the store's cannot be written.
    """
    found = find_cached(store, name)
    if found is not None:
        return found
    root = _cache_root(store)
    data = make()
    last: ArtifactWriteError | None = None
    if isinstance(root, Path):
        try:
            atomic_write(root / "cache" / name, data, tmp_dir=root / "tmp", durable=False)
            return root / "cache" / name
        except ArtifactWriteError as exc:
            if exc.details.get("errno") not in UNWRITABLE:
                raise
            last = exc
    for base in fallback_dirs(root):
        if not _private(base, create=True):
            continue
        try:
            atomic_write(base / name, data, tmp_dir=(base / name).parent, durable=False)
            return base / name
        except ArtifactWriteError as exc:
            last = exc
    raise last or ArtifactWriteError(f"no private cache folder for {name}", path=name)


def open_cached(store: Store, path: Path) -> BinaryIO:
    """Open a file ``canvas_png``/``thumb_png``/``diff_png`` returned, never through a link."""
    for base, top in _bases(_cache_root(store)):
        if path.is_relative_to(base):
            fd = nofollow.open_fd(top, path.relative_to(top).as_posix())
            if fd is not None:
                return os.fdopen(fd, "rb")
    raise NotFound(f"no cached file {path.name}")


def canvas_png(store: Store, canvas_id: str) -> Path:
    """The whole canvas as one PNG, encoded band by band from its tiles."""

    def make() -> bytes:
        buf = io.BytesIO()
        write_canvas_png(
            store.objects, store.objects.get_manifest(canvas_id, Canvas), buf, compress_level=3
        )
        return buf.getvalue()

    return _cached(store, f"canvas/{canvas_id}.png", make)


def thumb_size(canvas: Canvas, box: tuple[int, int] = THUMB) -> tuple[float, int, int]:
    """The scale of a canvas's thumbnail and its width and height (never enlarged)."""
    scale = min(box[0] / canvas.width, box[1] / canvas.height, 1.0)
    return scale, max(1, round(canvas.width * scale)), max(1, round(canvas.height * scale))


def thumbnail(
    store: Store,
    canvas_id: str,
    parent_id: str | None = None,
    box: tuple[int, int] = THUMB,
) -> np.ndarray:
    """The canvas scaled to fit ``box``, from the level just finer than that scale.

    The level is the parent canvas's (``parent_id``) with this step's tiles pasted over
    when the parent's is remembered, so the cost follows the new band, not the canvas.
    """
    canvas = store.objects.get_manifest(canvas_id, Canvas)
    scale, w, h = thumb_size(canvas, box)
    factor = canvas_levels.thumb_factor(canvas, scale)
    if parent_id is not None and canvas_levels.remembered(parent_id, factor) is None:
        _load_level(store, parent_id, factor)
    level = canvas_levels.canvas_level(store, canvas_id, factor, parent_id)
    return canvas_levels.scale_level(level, canvas, (w, h))


def level_name(canvas_id: str, factor: int) -> str:
    """Where a canvas's level is cached (under ``cache/``)."""
    return f"level/{factor}/{canvas_id}.png"


def keep_level(store: Store, canvas_id: str) -> None:
    """Cache the level a canvas's thumbnail is made from.

    For a branch head: the next step's thumbnail starts from it, in another process too.
    """
    canvas = store.objects.get_manifest(canvas_id, Canvas)
    factor = canvas_levels.thumb_factor(canvas, thumb_size(canvas)[0])
    if factor == 1 or find_cached(store, level_name(canvas_id, factor)) is not None:
        return  # level 1 is the canvas itself: its tiles are at hand already
    level = canvas_levels.canvas_level(store, canvas_id, factor)
    data = imageio.encode_png(imageio.from_array(np.ascontiguousarray(level.pixels)))
    _cached(store, level_name(canvas_id, factor), lambda: data)


def _load_level(store: Store, canvas_id: str, factor: int) -> None:
    """Read a cached level back (if there is one and it fits the canvas) and keep it at hand."""
    found = find_cached(store, level_name(canvas_id, factor))
    if found is None:
        return
    try:
        with open_cached(store, found) as f:
            pixels = imageio.to_array(imageio.decode(f.read(), what="a cached level"))
    except (ExqError, OSError):
        return  # unreadable: the level is made again from the tiles
    canvas = store.objects.get_manifest(canvas_id, Canvas)
    rect = canvas_levels.level_rect(canvas_rect(canvas), factor)
    channels = 4 if canvas.mode == "RGBA" else 3
    if pixels.shape == (rect.h, rect.w, channels):
        canvas_levels.remember(canvas_id, canvas_levels.Level(factor, rect, pixels))


def thumb_name(canvas_id: str) -> str:
    """Where a canvas's thumbnail is cached (under ``cache/``)."""
    return f"thumb/{canvas_id}.png"


def thumb_data(store: Store, canvas_id: str, parent_id: str | None = None) -> bytes:
    """The thumbnail of a canvas, PNG-encoded (``parent_id``: its parent step's canvas)."""
    pixels = thumbnail(store, canvas_id, parent_id)
    return imageio.encode_png(imageio.from_array(pixels), compress_level=6)


def thumb_png(store: Store, canvas_id: str, parent_id: str | None = None) -> Path:
    """The thumbnail of a canvas as a cached PNG file."""
    return _cached(store, thumb_name(canvas_id), lambda: thumb_data(store, canvas_id, parent_id))


_DIFF_RECTS: OrderedDict[tuple[str, str], Rect] = OrderedDict()
_DIFF_LOCK = threading.Lock()


def diff_rect(store: Store, a_id: str, b_id: str) -> Rect:
    """Where two canvases (by id) can differ inside their common rectangle.

    Tiles are named by their pixels on a grid anchored at the origin, so a cell whose
    tile id the two share is identical; the rest is the bounding box of the others
    (remembered: canvases never change).
    """
    with _DIFF_LOCK:
        hit = _DIFF_RECTS.get((a_id, b_id))
    if hit is not None:
        return hit
    a = store.objects.get_manifest(a_id, Canvas)
    b = store.objects.get_manifest(b_id, Canvas)
    common = canvas_rect(a).intersect(canvas_rect(b))
    changed = common
    if not common.empty and a.tile_size == b.tile_size:
        t = a.tile_size
        changed = Rect(0, 0, 0, 0)
        for col, row, _ in itertools.chain(
            differing_tiles(store.objects, a, b), differing_tiles(store.objects, b, a)
        ):
            cell = Rect(col * t, row * t, t, t).intersect(common)
            if not cell.empty:
                changed = changed.union(cell)
    with _DIFF_LOCK:
        _DIFF_RECTS[(a_id, b_id)] = changed
        while len(_DIFF_RECTS) > 4096:
            _DIFF_RECTS.popitem(last=False)
    return changed


def diff_name(a_id: str, b_id: str, rect: Rect) -> str:
    """Where the diff of two canvases over ``rect`` is cached (under ``cache/``)."""
    return f"diff/{a_id}-{b_id}-{rect.x}_{rect.y}_{rect.w}_{rect.h}.png"


def diff_data(store: Store, a_id: str, b_id: str) -> bytes:
    """Where two canvases differ, amplified (x4), over ``diff_rect`` only, PNG-encoded.

    Nothing differing gives one black pixel.
    """
    rect = diff_rect(store, a_id, b_id)
    if rect.empty:
        return imageio.encode_png(imageio.from_array(np.zeros((1, 1, 3), np.uint8)))
    a = store.objects.get_manifest(a_id, Canvas)
    b = store.objects.get_manifest(b_id, Canvas)
    pa = compose(store.objects, a, rect)[:, :, :3].astype(np.int16)
    pb = compose(store.objects, b, rect)[:, :, :3].astype(np.int16)
    d = np.clip(np.abs(pa - pb) * 4, 0, 255).astype(np.uint8)
    return imageio.encode_png(imageio.from_array(d))


def diff_png(store: Store, a_id: str, b_id: str) -> Path:
    """The diff of two canvases (see ``diff_data``) as a cached PNG file."""
    name = diff_name(a_id, b_id, diff_rect(store, a_id, b_id))
    return _cached(store, name, lambda: diff_data(store, a_id, b_id))


def cached_file(store: Store, name: str, make: Callable[[], bytes]) -> Path:
    """``cache/<name>`` (or its fallback), made by ``make()`` the first time (the pyramid's)."""
    return _cached(store, name, make)
