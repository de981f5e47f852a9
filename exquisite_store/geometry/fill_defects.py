"""Defects of a fill that the eye sees and the seam score does not name: three measures.

``colour_step``: the colour jump across the seam, in levels, against the jump between
the same number of columns inside the context (what the picture itself does there).
``context_seam``: the seam score's jump-over-texture ratio with the texture taken from
the context side only, so that a band blander than the context (no second face) does
not raise it by lowering the texture it is divided by, as today's ``seam_score`` does.
``repeat_rate``: the share of the new band's textured blocks that are copies of a
block of the context (a second face, a second bike), by a test that needs no
threshold in levels: a block is a copy when its nearest context block is nearer to it
than that block is to itself moved by one pixel. Measured at half scale, where a copied
object is still a copy and the search is a sixteenth of the work.
"""

from __future__ import annotations

import numpy as np

#: rows per block when the colour step is measured (its median over blocks is kept)
STEP_ROWS = 16
#: columns on each side of the seam averaged into one colour
STEP_COLS = 4
#: block side (half-scale pixels) of the repeat test; and its source grid's stride (1:
#: every position, so that a copy at any offset is found)
REPEAT_BLOCK = 8
REPEAT_STRIDE = 1
#: a block whose standard deviation is below this (levels) is flat: never a "copy"
TEXTURED_STD = 6.0


def colour_step(strip: np.ndarray, seam_col: int) -> tuple[float, float]:
    """(jump at the seam, the same jump at a column of the context), levels, worst channel.

    Each is the median over blocks of STEP_ROWS rows of the largest per-channel
    difference between the means of STEP_COLS columns either side of the column.
    """
    inside = max(STEP_COLS, seam_col - 4 * STEP_COLS)
    return _step_at(strip, seam_col), _step_at(strip, inside)


def _step_at(strip: np.ndarray, col: int) -> float:
    h = strip.shape[0] // STEP_ROWS * STEP_ROWS
    a = strip[:h, col - STEP_COLS : col].astype(np.float64)
    b = strip[:h, col : col + STEP_COLS].astype(np.float64)
    ma = a.reshape(-1, STEP_ROWS, STEP_COLS, a.shape[2]).mean(axis=(1, 2))
    mb = b.reshape(-1, STEP_ROWS, STEP_COLS, b.shape[2]).mean(axis=(1, 2))
    return float(np.median(np.abs(ma - mb).max(axis=1)))


def context_seam(strip: np.ndarray, seam_col: int) -> int:
    """1000 x the worst, over block sizes 1, 4, 16, of seam jump / the context's own texture.

    The jump is the mean change between the block columns either side of the seam; the
    texture the median of the same change between the next 32 pairs on the old side
    (each floored at one level, as in ``seam_score``).
    """
    worst = 0.0
    for block in (1, 4, 16):
        pairs = min(32, seam_col // block - 1)
        if pairs < 1 or (strip.shape[1] - seam_col) // block < 1:
            continue
        h = strip.shape[0] // block * block
        lo, hi = seam_col - (pairs + 1) * block, seam_col + block
        part = strip[:h, lo:hi].astype(np.float64)
        cols = part.reshape(h // block, block, (hi - lo) // block, block, -1).mean(axis=(1, 3))
        diffs = np.abs(np.diff(cols, axis=1)).mean(axis=(0, 2))
        jump, texture = diffs[-1], np.median(diffs[:-1])
        worst = max(worst, max(jump, 1.0) / max(texture, 1.0))
    return int(np.floor(1000.0 * worst + 0.5))


def repeat_rate(image: np.ndarray, hole: np.ndarray) -> float:
    """Share of the hole's textured blocks copied from the context (0 when none is textured)."""
    small = _halve(image.astype(np.float32))
    small_hole = _halve(hole.astype(np.float32)) > 0
    k = REPEAT_BLOCK
    targets = _blocks(small, ~small_hole, k, k)
    sources = _blocks(small, small_hole, REPEAT_STRIDE, k)
    tgt = [(y, x) for y, x in targets if small[y : y + k, x : x + k].std() > TEXTURED_STD]
    if not tgt or not sources:
        return 0.0
    t = np.stack([small[y : y + k, x : x + k].ravel() for y, x in tgt])
    s = np.stack([small[y : y + k, x : x + k].ravel() for y, x in sources])
    best = np.full(len(t), np.inf)
    which = np.zeros(len(t), np.int64)
    s_sq = (s**2).sum(1)
    for lo in range(0, len(s), 4096):
        part = s[lo : lo + 4096]
        d = (t**2).sum(1)[:, None] + s_sq[None, lo : lo + 4096] - 2.0 * t @ part.T
        arg = d.argmin(axis=1)
        got = d[np.arange(len(t)), arg]
        better = got < best
        best[better], which[better] = got[better], arg[better] + lo
    # a copy is as near its source as the source is to itself moved by a pixel
    shift = np.array([_self_shift(small, *sources[i], k) for i in which])
    return float(np.mean(best <= shift))


def _self_shift(img: np.ndarray, y: int, x: int, k: int) -> float:
    """Squared distance of a block to itself moved by one pixel (the largest of four)."""
    h, w = img.shape[:2]
    block = img[y : y + k, x : x + k]
    out = 0.0
    for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0)):
        yy, xx = y + dy, x + dx
        if 0 <= yy <= h - k and 0 <= xx <= w - k:
            out = max(out, float(((img[yy : yy + k, xx : xx + k] - block) ** 2).sum()))
    return out


def _blocks(img: np.ndarray, avoid: np.ndarray, stride: int, k: int) -> list[tuple[int, int]]:
    """Top-left corners of k-blocks on a stride grid that do not touch ``avoid``."""
    h, w = avoid.shape
    c = np.pad(avoid.astype(np.int32), [(1, 0), (1, 0)]).cumsum(0).cumsum(1)
    hits = c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]
    ys, xs = np.nonzero(hits[::stride, ::stride] == 0)
    return [(int(y) * stride, int(x) * stride) for y, x in zip(ys, xs, strict=True)]


def _halve(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    a = a[:h, :w]
    return (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) / 4
