"""Seam and drift scores, as integers (per-mille) so the records that hold them hash stably.

``seam_score`` compares the jump across a seam with the image's own column-to-column
change next to it, at several scales (block means), and keeps the worst; at the coarse
scales block boundaries a little before the seam are tried too, so that a feather,
which spreads a step over the columns just before the seam, cannot hide it.
``drift_scores`` measures how far the model repainted the context it was told to keep.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from exquisite_store.errors import ConfigError, DimensionMismatch
from exquisite_store.geometry.seams import correct_colour, div_round

# Block sizes at which the seam is measured: a feather spreads a colour step over a
# few columns at full scale, but it is one block pair again at 1/4 or 1/16.
SCORE_SCALES: tuple[int, ...] = (1, 4, 16)
# Block boundaries tried per coarse scale, from the seam back into the old side: a
# feather turns a step into a ramp just before the seam, and a block pair straddling
# the middle of that ramp sees most of the step where one aligned on the seam sees half.
PHASES = 4
# Column pairs on each side of the seam whose median is "the image's own texture".
NEIGHBOUR_PAIRS = 32
# One quantisation level: a change smaller than that is invisible, and flooring both
# the jump and the texture at it keeps a flat, uncut image at 1000 rather than 0 or inf.
LEVEL_FLOOR = 1.0
# Levels by which a pixel's channels may differ before it counts as repainted.
CHANGED_LEVELS = 2


@dataclass(frozen=True)
class DriftScores:
    """How far the model's rendering of the context differs from it, before and after correction."""

    mean_abs_milli: int
    changed_permille: int
    corrected_mean_abs_milli: int
    corrected_changed_permille: int


def seam_score(strip_canon: np.ndarray, seam_col: int) -> int:
    """1000 x jump across the seam / nearby column change, worst scale; ~1000 = invisible."""
    if strip_canon.ndim != 3:
        raise DimensionMismatch(f"strip must be H x W x ch, got {strip_canon.shape}")
    if not 1 <= seam_col <= strip_canon.shape[1] - 1:
        raise ConfigError(
            f"seam_col {seam_col} must have a column on each side "
            f"(strip width {strip_canon.shape[1]})",
            field="seam_col",
        )
    ratios = []
    for block in SCORE_SCALES:
        sums = _RowSums(strip_canon, seam_col, block)
        for lag in range(0, block, max(1, block // PHASES)):
            ratios.append(sums.ratio_at(seam_col - lag))
    worst = max(r for r in ratios if r is not None)
    return int(np.floor(1000.0 * worst + 0.5))


class _RowSums:
    """Sums over blocks of ``block`` rows, on the columns near the seam only.

    The score looks at the seam pair and NEIGHBOUR_PAIRS pairs on each side, so only
    ``NEIGHBOUR_PAIRS + 1`` blocks each side (plus the coarse scales' lags) are read:
    the cost follows the seam's length, not the strip's width. Integer sums, not
    float means: a mean's difference is a sum's difference over the block's area.
    Held column-major (``columns x row blocks x channels``), so that a column block
    and the change between two of them are runs of contiguous memory.
    """

    def __init__(self, strip: np.ndarray, seam_col: int, block: int) -> None:
        height, width, ch = strip.shape
        self.block, self.width, self.ch = block, width, ch
        self.rows = height // block
        reach = (NEIGHBOUR_PAIRS + 1) * block
        self.lo = max(0, seam_col - (block - 1) - reach)
        hi = min(width, seam_col + reach)
        part = strip[: self.rows * block, self.lo : hi].transpose(1, 0, 2)
        # at most 16 x 255 per sum: uint16 adds, one row of each block at a time
        sums = part[:, 0::block].astype(np.uint16)
        for k in range(1, block):
            sums += part[:, k::block]
        self.sums = sums.astype(np.int32).reshape(hi - self.lo, self.rows * ch)

    def ratio_at(self, boundary: int) -> float | None:
        """Jump / texture across one block boundary, or None where the strip is too small."""
        block, rows, ch = self.block, self.rows, self.ch
        left, right = boundary // block, (self.width - boundary) // block
        if block > 1 and (left < 2 or right < 2 or rows < 1):
            return None
        # blocks aligned on the boundary, so that it stays a boundary between two blocks
        n_left, n_right = min(left, NEIGHBOUR_PAIRS + 1), min(right, NEIGHBOUR_PAIRS + 1)
        start = boundary - n_left * block - self.lo
        cols = self.sums[start : start + (n_left + n_right) * block]
        if block > 1:
            cols = cols.reshape(n_left + n_right, block, rows * ch).sum(axis=1, dtype=np.int32)
        area = block * block * rows * ch
        diffs = np.abs(np.diff(cols, axis=0)).sum(axis=1, dtype=np.int64) / area
        return _ratio(diffs, n_left - 1)


def _ratio(diffs: np.ndarray, seam_pair: int) -> float:
    """The seam pair's change over the median change of its neighbours (floored)."""
    jump = float(diffs[seam_pair])
    lo, hi = max(0, seam_pair - NEIGHBOUR_PAIRS), seam_pair + 1 + NEIGHBOUR_PAIRS
    neighbours = np.concatenate([diffs[lo:seam_pair], diffs[seam_pair + 1 : hi]])
    texture = float(np.median(neighbours)) if neighbours.size else 0.0
    return max(jump, LEVEL_FLOOR) / max(texture, LEVEL_FLOOR)


def drift_scores(
    context_canon: np.ndarray,
    model_context_canon: np.ndarray,
    gain_milli: tuple[int, ...] | None = None,
    offset_milli: tuple[int, ...] | None = None,
) -> DriftScores:
    """Drift of the model's context from the true one, raw and after the colour correction."""
    if context_canon.shape != model_context_canon.shape or context_canon.ndim != 3:
        raise DimensionMismatch(
            f"context {context_canon.shape} and model context {model_context_canon.shape} differ",
            expected=context_canon.shape,
            got=model_context_canon.shape,
        )
    mean_abs, changed = _drift(context_canon, model_context_canon)
    if gain_milli is None and offset_milli is None:
        corrected = (mean_abs, changed)
    else:
        ch = context_canon.shape[2]
        gain = gain_milli if gain_milli is not None else (1000,) * ch
        offset = offset_milli if offset_milli is not None else (0,) * ch
        corrected = _drift(context_canon, correct_colour(model_context_canon, gain, offset))
    return DriftScores(mean_abs, changed, *corrected)


def _drift(truth: np.ndarray, model: np.ndarray) -> tuple[int, int]:
    """``(1000 x mean absolute level difference, per-mille of changed pixels)``, exact ints."""
    if truth.size == 0:
        return 0, 0
    total = changed = 0
    step = max(1, (1 << 20) // max(1, truth.shape[1]))  # rows at a time: bounded memory
    for r in range(0, truth.shape[0], step):
        diff = np.abs(truth[r : r + step].astype(np.int16) - model[r : r + step])  # <= 255
        total += int(diff.sum(dtype=np.int64))
        worst = diff[:, :, 0]  # channel by channel: much faster than max(axis=2)
        for c in range(1, diff.shape[2]):
            worst = np.maximum(worst, diff[:, :, c])
        changed += int(np.count_nonzero(worst > CHANGED_LEVELS))
    mean_abs = div_round(1000 * total, truth.size)
    pixels = truth.shape[0] * truth.shape[1]
    return mean_abs, div_round(1000 * changed, pixels)
