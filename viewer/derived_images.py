"""Derived images for the viewer: full canvases, thumbnails, diffs (cached in ``cache/``).

When the store's ``cache/`` cannot be written (a read-only store), they are cached
outside the store instead, under ``$XDG_CACHE_HOME/exquisite-store/<key>`` (or
``~/.cache``, or the system's temp folder), keyed by the store's path. A cached file
is never read through a symbolic link.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from exquisite_store import imageio
from exquisite_store.errors import ArtifactWriteError, NotFound
from exquisite_store.geometry.rect import Rect
from exquisite_store.manifests import Canvas
from exquisite_store.store import Store, compose, nofollow
from exquisite_store.store.canvas import canvas_rect, iter_tiles
from exquisite_store.store.files import atomic_write

THUMB = (240, 160)
#: errno names of a cache folder that cannot be written (ArtifactWriteError's detail)
UNWRITABLE = frozenset({"EROFS", "EACCES", "EPERM"})


def fallback_dirs(root: Path | str) -> list[Path]:
    """Caches outside the store for ``root``: in the user's cache folder, then in temp.

    ``root`` is the store's folder, or the address of a store on object storage (whose
    derived files are always cached here).
    """
    name = str(root.resolve()) if isinstance(root, Path) else root
    key = hashlib.blake2b(name.encode(), digest_size=10).hexdigest()
    home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    user = f"exquisite-store-{os.getuid()}" if hasattr(os, "getuid") else "exquisite-store"
    return [Path(home) / "exquisite-store" / key, Path(tempfile.gettempdir()) / user / key]


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


def _cached(store: Store, name: str, make: Callable[[], bytes]) -> Path:
    """``cache/<name>``, made by ``make() -> bytes`` the first time (atomically).

    Found in the store's cache or a fallback one (never through a link); made in the
    store's cache, or in the first fallback when the store's cannot be written.
    """
    root = _cache_root(store)
    for base, top in _bases(root):
        if nofollow.lstat(top, (base / name).relative_to(top).as_posix()) is not None:
            return base / name
    data = make()
    last: ArtifactWriteError | None = None
    if isinstance(root, Path):
        try:
            atomic_write(root / "cache" / name, data, tmp_dir=root / "tmp")
            return root / "cache" / name
        except ArtifactWriteError as exc:
            if exc.details.get("errno") not in UNWRITABLE:
                raise
            last = exc
    for base in fallback_dirs(root):
        if not _private(base, create=True):
            continue
        try:
            atomic_write(base / name, data, tmp_dir=(base / name).parent)
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


def cached_file(store: Store, name: str, make: Callable[[], bytes]) -> Path:
    """``cache/<name>`` (or its fallback), made by ``make()`` the first time (the pyramid's)."""
    return _cached(store, name, make)
