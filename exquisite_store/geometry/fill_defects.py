"""Two defects of a fill that the eye sees and the seam score does not name: measures.

``colour_step``: the colour jump across the seam, in levels, against the jump between
the same number of columns inside the context (what the picture itself does there).
``repeat_rate``: the share of the new band's textured blocks that are copies of a
block of the context (a second face, a second bike), by a test that needs no
threshold in levels: a block is a copy when some context block is nearer to it than
the block is to itself moved by one pixel. Measured at half scale, where a copied
object is still a copy and the search is a sixteenth of the work.
"""

from __future__ import annotations

import numpy as np

#: rows per block when the colour step is measured (its median over blocks is kept)
STEP_ROWS = 16
#: columns on each side of the seam averaged into one colour
STEP_COLS = 4
#: block side (half-scale pixels) of the repeat test; and its source grid's stride
REPEAT_BLOCK = 8
REPEAT_STRIDE = 2
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
    s_sq = (s**2).sum(1)
    for lo in range(0, len(s), 4096):
        part = s[lo : lo + 4096]
        d = (t**2).sum(1)[:, None] + s_sq[None, lo : lo + 4096] - 2.0 * t @ part.T
        best = np.minimum(best, d.min(axis=1))
    self_shift = np.array([_self_shift(small, y, x, k) for y, x in tgt])
    return float(np.mean(best <= self_shift))


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
