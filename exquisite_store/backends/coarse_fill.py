"""A coarse-to-fine offline fill: PatchMatch at half scale, then a full-scale detail pass.

1. **Structure at half scale.** The frame is halved (2x2 means) and the hole filled by
   ``pypatchmatch``, a quarter of the pixels with patches of half the radius, so about a
   tenth of a full-scale fill's work. The most distinctive part of the context (the
   ``EXCLUDE_SHARE`` with the most gradient energy: faces, eyes, lettering), except a
   strip next to the hole so that what crosses the seam can go on, is withheld as a
   source: PatchMatch left alone copies the whole picture across the seam (a second
   face, a second bike).
2. **Detail at full scale.** The half-scale fill, scaled up, is smooth; every block of
   the hole is matched (by its smooth image) to a block of the context, and the
   context's fine detail there (the image less its own half-scale version) is added,
   blocks overlapping under a smooth window. A source block already used costs more
   each time it is chosen again (``REUSE_PENALTY``), so one patch of texture is not
   stamped over the whole band.
3. **The seam band at full scale.** The SEAM_BAND_PX of the hole next to the context
   are filled again by PatchMatch at full scale (``refill_seam``).

Pure: numpy arrays in and out; the same image, hole and seed give the same pixels.
"""

from __future__ import annotations

import numpy as np

#: PatchMatch's patch radius at half scale (the full-scale fill's 7, halved)
COARSE_PATCH = 4
#: below this many pixels on the hole's shorter side, the frame is filled at full scale
MIN_COARSE_PX = 48
#: share of the context withheld from the half-scale fill as too distinctive to repeat
EXCLUDE_SHARE = 0.4
#: width (full-scale pixels) of the context next to the hole that is always a source
SEAM_KEEP_PX = 128
#: hole pixels this near the context are filled again at full scale (``refill_seam``)
SEAM_BAND_PX = 12
#: ... seeing this much of the image around that band
SEAM_MARGIN_PX = 48
#: detail blocks: window side and step (full scale); windows overlap by half
BLOCK = 32
STEP = 16
#: context windows tried as sources, every SOURCE_STRIDE pixels
SOURCE_STRIDE = 4
#: a window is compared by its means over DESC x DESC cells
DESC = 8
#: cost of a source chosen again, per earlier use, in units of the median match distance
REUSE_PENALTY = 0.5
#: at most this many context windows are compared (the stride grows past it)
MAX_SOURCES = 12000
#: hole windows matched per distance matrix (bounds its memory)
TARGET_CHUNK = 256
#: windows described at a time
DESCRIBE_CHUNK = 1024


def fill(image: np.ndarray, hole: np.ndarray, seed: int, patch_size: int = 7) -> np.ndarray:
    """Fill the ``hole`` (non-zero) pixels of an HxWx3 uint8 image; seeded, deterministic."""
    from patchmatch import patch_match

    hole = hole != 0
    if not hole.any():
        return image.copy()
    if not (~hole).any() or _short_side(hole) < MIN_COARSE_PX:
        patch_match.set_random_seed(seed % 2**32)
        return patch_match.inpaint(image, hole.astype(np.uint8) * 255, patch_size=patch_size)
    small, small_hole = halve(image), halve(hole.astype(np.float32)) > 0
    withheld = distinctive(small, small_hole, EXCLUDE_SHARE, SEAM_KEEP_PX // 2)
    patch_match.set_random_seed(seed % 2**32)
    coarse = patch_match.inpaint(
        small,
        small_hole.astype(np.uint8) * 255,
        global_mask=withheld.astype(np.uint8) * 255,
        patch_size=COARSE_PATCH,
    )
    h, w = hole.shape
    # the smooth image: the fill in the hole, the context's own half-scale version outside
    guide = double(coarse.astype(np.float32), h, w)
    detail = image.astype(np.float32) - guide
    added = transfer_detail(guide, guide, detail, hole)
    out = image.copy()
    out[hole] = np.clip(guide[hole] + added[hole] + 0.5, 0, 255).astype(np.uint8)
    return refill_seam(out, hole, seed, patch_size)


def refill_seam(image: np.ndarray, hole: np.ndarray, seed: int, patch_size: int) -> np.ndarray:
    """Fill again, at full scale, the SEAM_BAND_PX of the hole next to the context.

    The band is a narrow gap between two known sides (the context and the rest of the
    fill), so PatchMatch joins them with full-scale texture where the detail pass's
    blocks, taken from elsewhere, would leave a line; it sees only a crop around it.
    """
    from patchmatch import patch_match

    band = hole & near(~hole, SEAM_BAND_PX)
    rows, cols = np.nonzero(band.any(axis=1))[0], np.nonzero(band.any(axis=0))[0]
    m = SEAM_MARGIN_PX
    y0, y1 = max(0, rows[0] - m), min(hole.shape[0], rows[-1] + 1 + m)
    x0, x1 = max(0, cols[0] - m), min(hole.shape[1], cols[-1] + 1 + m)
    patch_match.set_random_seed((seed + 1) % 2**32)
    crop = patch_match.inpaint(
        np.ascontiguousarray(image[y0:y1, x0:x1]),
        band[y0:y1, x0:x1].astype(np.uint8) * 255,
        patch_size=patch_size,
    )
    out = image.copy()
    out[y0:y1, x0:x1] = crop
    return out


def _short_side(hole: np.ndarray) -> int:
    rows, cols = np.nonzero(hole.any(axis=1))[0], np.nonzero(hole.any(axis=0))[0]
    return int(min(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))


def halve(a: np.ndarray) -> np.ndarray:
    """2x2 means (the last row/column repeated where a side is odd); keeps the dtype."""
    h, w = a.shape[:2]
    pad = [(0, h % 2), (0, w % 2)] + [(0, 0)] * (a.ndim - 2)
    p = np.pad(a, pad, mode="edge").astype(np.float32)
    m = (p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2]) / 4
    if a.dtype == np.uint8:
        return np.ascontiguousarray(np.clip(m + 0.5, 0, 255).astype(np.uint8))
    return m


def double(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear 2x upscale of a float image (pixel centres aligned), cropped to ``h x w``."""
    p = np.pad(a, [(1, 1), (1, 1)] + [(0, 0)] * (a.ndim - 2), mode="edge")
    # full-scale pixel i sits at half-scale coordinate (i - 0.5) / 2: weights 1/4, 3/4
    rows = np.empty((2 * a.shape[0],) + p.shape[1:], np.float32)
    rows[0::2] = 0.25 * p[:-2] + 0.75 * p[1:-1]
    rows[1::2] = 0.75 * p[1:-1] + 0.25 * p[2:]
    out = np.empty((rows.shape[0], 2 * a.shape[1]) + a.shape[2:], np.float32)
    out[:, 0::2] = 0.25 * rows[:, :-2] + 0.75 * rows[:, 1:-1]
    out[:, 1::2] = 0.75 * rows[:, 1:-1] + 0.25 * rows[:, 2:]
    return out[:h, :w]


def box_sum(a: np.ndarray, r: int) -> np.ndarray:
    """Sum over the (2r+1)-square around each pixel (edges repeated), by integral image."""
    p = np.pad(a, [(r + 1, r), (r + 1, r)] + [(0, 0)] * (a.ndim - 2), mode="edge")
    c = p.astype(np.float64).cumsum(0).cumsum(1)
    k = 2 * r + 1
    return c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]


def distinctive(image: np.ndarray, hole: np.ndarray, share: float, keep_px: int) -> np.ndarray:
    """The ``share`` of the context with the most local gradient energy, off the seam strip."""
    g = image.astype(np.float32).mean(axis=2)
    energy = np.zeros_like(g)
    energy[:, 1:] += np.abs(np.diff(g, axis=1))
    energy[1:, :] += np.abs(np.diff(g, axis=0))
    energy = box_sum(energy, 5)
    context = ~hole
    candidates = context & ~near(hole, keep_px)  # off the strip next to the hole
    if not candidates.any():
        return np.zeros_like(hole)
    limit = np.quantile(energy[context], 1.0 - share)
    return candidates & (energy > limit)


def transfer_detail(
    guide: np.ndarray, base: np.ndarray, detail: np.ndarray, hole: np.ndarray
) -> np.ndarray:
    """The context's fine detail laid over the hole, block by block, matched on ``guide``.

    ``guide`` is the smooth fill (the hole) and ``base`` the context's smooth image; a
    hole window is matched to the context window whose ``base`` is nearest to the
    window's ``guide``, plus the reuse penalty; its ``detail`` is blended in.
    """
    h, w = hole.shape
    out = np.zeros_like(detail)
    if h < BLOCK or w < BLOCK:
        return out
    sources = _source_windows(~hole)
    targets = _target_windows(hole)
    if not len(sources) or not len(targets):
        return out
    src_desc = _describe(base, sources)
    tgt_desc = _describe(guide, targets)
    src_sq = (src_desc**2).sum(1)
    pos = sources
    uses = np.zeros(len(sources), np.float32)
    weight = np.zeros((h, w), np.float32)
    win = np.hanning(BLOCK + 2)[1:-1].astype(np.float32)
    win2 = np.outer(win, win)
    scale = None
    for lo in range(0, len(targets), TARGET_CHUNK):
        chunk = tgt_desc[lo : lo + TARGET_CHUNK]
        dist = (chunk**2).sum(1)[:, None] + src_sq[None, :] - 2.0 * chunk @ src_desc.T
        if scale is None:  # the typical match distance, from the first rows (raster order)
            scale = float(np.median(dist.min(axis=1))) + 1.0
        for k in range(len(chunk)):
            y, x = targets[lo + k]
            c = int(np.argmin(dist[k] + (REUSE_PENALTY * scale) * uses))
            sy, sx = int(pos[c, 0]), int(pos[c, 1])
            uses[(np.abs(pos[:, 0] - sy) < STEP) & (np.abs(pos[:, 1] - sx) < STEP)] += 1.0
            patch = detail[sy : sy + BLOCK, sx : sx + BLOCK]
            out[y : y + BLOCK, x : x + BLOCK] += win2[..., None] * patch
            weight[y : y + BLOCK, x : x + BLOCK] += win2
    return out / np.maximum(weight, 1e-9)[..., None]


def _source_windows(known: np.ndarray) -> np.ndarray:
    """Top-left corners (N x 2) of BLOCK windows entirely in the context, on a grid.

    The grid's stride grows with the context so that at most MAX_SOURCES are compared.
    """
    c = np.pad(known.astype(np.int32), [(1, 0), (1, 0)]).cumsum(0).cumsum(1)
    full = c[BLOCK:, BLOCK:] - c[:-BLOCK, BLOCK:] - c[BLOCK:, :-BLOCK] + c[:-BLOCK, :-BLOCK]
    inside = full == BLOCK * BLOCK
    stride = max(SOURCE_STRIDE, int(np.ceil(np.sqrt(inside.sum() / MAX_SOURCES))))
    ys, xs = np.nonzero(inside[::stride, ::stride])
    return np.stack([ys * stride, xs * stride], axis=1).astype(np.int32)


def _target_windows(hole: np.ndarray) -> np.ndarray:
    """Top-left corners (N x 2, raster order) of half-overlapping windows over the hole."""
    h, w = hole.shape
    ys = np.clip(np.arange(-STEP, h, STEP), 0, h - BLOCK)
    xs = np.clip(np.arange(-STEP, w, STEP), 0, w - BLOCK)
    out = []
    for y in dict.fromkeys(ys.tolist()):
        for x in dict.fromkeys(xs.tolist()):
            if hole[y : y + BLOCK, x : x + BLOCK].any():
                out.append((y, x))
    return np.array(out, np.int32).reshape(-1, 2)


def _describe(img: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Each window's means over DESC x DESC cells, flattened (N x DESC*DESC*channels).

    Gathered DESCRIBE_CHUNK windows at a time, so memory follows the chunk, not the frame.
    """
    cell = BLOCK // DESC
    ch = img.shape[2]
    out = np.empty((len(corners), DESC * DESC * ch), np.float32)
    offs = np.arange(BLOCK)
    for lo in range(0, len(corners), DESCRIBE_CHUNK):
        part = corners[lo : lo + DESCRIBE_CHUNK]
        ys = part[:, 0, None, None] + offs[None, :, None]
        xs = part[:, 1, None, None] + offs[None, None, :]
        wins = img[ys, xs].reshape(len(part), DESC, cell, DESC, cell, ch)
        out[lo : lo + len(part)] = wins.mean(axis=(2, 4), dtype=np.float32).reshape(len(part), -1)
    return out


def near(mask: np.ndarray, r: int) -> np.ndarray:
    """Pixels within ``r`` (square) of a True pixel of ``mask``: int32 separable box sums."""
    m = np.pad(mask.astype(np.int32), r)
    c = np.pad(m, [(1, 0), (0, 0)]).cumsum(axis=0, dtype=np.int32)
    rows = c[2 * r + 1 :] - c[: -2 * r - 1]
    c = np.pad(rows, [(0, 0), (1, 0)]).cumsum(axis=1, dtype=np.int32)
    return (c[:, 2 * r + 1 :] - c[:, : -2 * r - 1]) > 0
